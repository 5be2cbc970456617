"""The whole assistant (five speech services on their real models, and the
gateway) started once for the e2e tier, shared by its test modules."""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.stack import Stack, start_stack

# Lets test_faults.py inject faults (/admin/faults); harmless to the other
# tests: no fault is set unless a test sets one, and it clears it after.
ADMIN_KEY = "e2e-admin-key-0123456789"


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    # The services run with their defaults: ASR interims at nice 19. A barge-in
    # is confirmed by an urgent ASR flush, not by waiting for an interim.
    st = start_stack(gateway_env={"GATEWAY_ADMIN_API_KEYS": ADMIN_KEY})
    try:
        yield st
    finally:
        st.stop()
