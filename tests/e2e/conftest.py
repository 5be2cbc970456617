"""The whole assistant (five speech services on their real models, and the
gateway) started once for the e2e tier, shared by its test modules."""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.stack import Stack, start_stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    st = start_stack()
    try:
        yield st
    finally:
        st.stop()
