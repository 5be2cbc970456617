"""The protocol fuzzer: seeded client messages (tests/fuzz/client_events.py),
valid and invalid, interleaved with audio, against the real gateway app on
fake backends.

Invariants, over FUZZ_EVENTS messages (default 100,000) split over the seeds:
the socket is never closed (no 1011 from an unhandled exception), nothing is
logged at ERROR, every ``error`` names the event_id of the message that
caused it, and what the session keeps stays bounded (max_items items, a
bounded stored size), and so does the process: its resident memory after
the last message is within RSS_GROWTH_MB of what it was a fifth of the way
in (a leak of ~1.5 KB per message fails it over a seed's 25,000). A
failing seed prints its seed and message number; it is then kept in
REGRESSION_SEEDS.

    FUZZ_EVENTS=100000 .venv/bin/python -m pytest tests/fuzz      (make test-fuzz)"""
from __future__ import annotations

import gc
import logging
import os

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.fuzz.client_events import ClientEvents
from tests.fuzz.harness import check_stored, drain, fuzz_app

EVENTS = int(os.environ.get("FUZZ_EVENTS", "100000"))
SEEDS = [int(s) for s in os.environ.get("FUZZ_SEEDS", "1,2,3,4").split(",")]
# Seeds that once failed, run first. Seeds 2 and 3 of the default set found the
# unretrieved gather() of UserTurn.wait_finals (now also a unit test in
# tests/unit/test_gateway_failures.py) and stay in the default set.
REGRESSION_SEEDS: list[int] = []
DRAIN_EVERY = 50
RSS_GROWTH_MB = 24   # measured: 0-4 MB per seed of 25,000 messages


def rss_mb() -> float:
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


@pytest.mark.parametrize("seed", REGRESSION_SEEDS + SEEDS)
def test_fuzzed_client_events_never_break_the_session(seed, caplog):
    n = max(DRAIN_EVERY, EVENTS // len(SEEDS))
    app = fuzz_app()
    gen = ClientEvents(seed)
    sent: set[str] = set()
    stray: list[dict] = []
    caplog.set_level(logging.ERROR, logger="services")
    with TestClient(app) as c, c.websocket_connect("/v1/realtime") as ws:
        sid = ws.receive_json()["session"]["id"]
        text, unnamed = "", 0      # messages of this window that carry no event_id
        warm = max(DRAIN_EVERY, n // 5 // DRAIN_EVERY * DRAIN_EVERY)
        rss_warm = rss_end = 0.0
        try:
            for i in range(1, n + 1):
                text, eid = gen.next()
                if eid:
                    sent.add(eid)
                else:
                    unnamed += 1
                ws.send_text(text)
                if i % DRAIN_EVERY == 0 or i == n:
                    anonymous = drain(ws, f"mark{i}", sent)
                    # Each unnamed message gets exactly one error, at once; any other
                    # error without an event_id came from a message that had one.
                    if len(anonymous) != unnamed:
                        stray += anonymous
                    unnamed = 0
                    if i == warm:
                        rss_warm = rss_mb()
                    if i == n:
                        rss_end = rss_mb()
        except WebSocketDisconnect as exc:
            pytest.fail(f"seed {seed}: socket closed (code {exc.code}) at message {i}: {text[:300]}")
        except Exception as exc:   # the server's own exception, re-raised by the test client
            pytest.fail(f"seed {seed}: {type(exc).__name__} at message {i}: {text[:300]}")
        stored = app.state.ctx.store._memory[sid]
    assert not stray, f"seed {seed}: errors without the event_id that caused them: {stray[:5]}"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, f"seed {seed}: logged at ERROR: {[r.getMessage() for r in errors[:5]]}"
    check_stored(stored)
    assert rss_end - rss_warm < RSS_GROWTH_MB, \
        f"seed {seed}: resident memory grew {rss_end - rss_warm:.0f} MB from message {warm} to {n}"
