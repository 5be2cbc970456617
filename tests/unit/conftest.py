"""Process-wide caches start empty for every unit test: a pytest-xdist worker
runs several test files in one process, in any order, and a cache filled by
one test's fakes must not decide another's (the gateway's "does retrieval
have documents" answer is cached per address for 30 s, and every fake RAG
has the same address)."""
from __future__ import annotations

import pytest

from services.gateway import defaults


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    defaults._DOCS_CACHE.clear()
    yield
    defaults._DOCS_CACHE.clear()
