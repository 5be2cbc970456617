"""Small parts the gateway's behaviour rests on.

Invariants: a played position maps to the words actually heard (whole
clauses, then a proportional share of words); coughs and backchannels are
not real words; canary routing is deterministic per session id and sends
about the configured share; the ring buffer returns audio by session time
and knows when each sample arrived; settings resolve flag → env → default."""
from __future__ import annotations

from services.gateway import backchannel
from services.gateway.__main__ import GatewaySettings
from services.gateway.audio_in import Resampler, RingBuffer
from services.gateway.backends.routing import choose
from services.gateway.session import Clause, heard_text
from common.config import load_settings


def test_heard_text_whole_clauses_then_a_share_of_words():
    clauses = [Clause("One two three.", 0, 1000), Clause("Four five six seven.", 1000, 3000)]
    assert heard_text(clauses, 0) == ""
    assert heard_text(clauses, 999) == "One two"
    assert heard_text(clauses, 1000) == "One two three."
    assert heard_text(clauses, 2000) == "One two three. Four five"
    assert heard_text(clauses, 10_000) == "One two three. Four five six seven."


def test_backchannels_and_noises_are_not_real():
    for text in ("", "  ", "Mm-hm.", "uh-huh", "Yeah.", "OK", "okay, yeah", "(coughs)", "[cough]", "Hmm..."):
        assert not backchannel.is_real(text), text
    for text in ("Stop.", "wait", "no", "yeah but what about tomorrow", "Hold on."):
        assert backchannel.is_real(text), text


def test_canary_routing_is_deterministic_and_proportional():
    stable, canary = ["s1:1", "s2:1"], ["c1:1"]
    ids = [f"sess_{i:05d}" for i in range(2000)]
    picks = [choose(i, "asr", stable, canary, 10.0) for i in ids]
    assert picks == [choose(i, "asr", stable, canary, 10.0) for i in ids]
    share = sum(v == "canary" for _, v in picks) / len(ids)
    assert 0.07 < share < 0.13
    assert {a for a, v in picks if v == "stable"} == set(stable)
    assert all(v == "stable" for _, v in (choose(i, "asr", stable, [], 50.0) for i in ids[:100]))
    assert all(v == "stable" for _, v in (choose(i, "asr", stable, canary, 0.0) for i in ids[:100]))


def test_ring_buffer_positions_and_arrival_times():
    ring = RingBuffer(keep_ms=1000)
    for i in range(100):                      # 100 chunks of 20 ms, each arriving at its end
        ring.append(bytes([i % 256, 0]) * 320, wall=(i + 1) * 0.02)
    assert ring.end_ms == 2000
    assert ring.slice(0, 500) == b""          # older than keep_ms: gone
    chunk = ring.slice(1960, 1980)
    assert chunk == bytes([98, 0]) * 320
    assert abs(ring.wall_of(1970) - 1.97) < 1e-9
    assert abs(ring.wall_of(2000) - 2.0) < 1e-9


def test_resampler_reports_its_delay():
    rs = Resampler()
    out = b"".join(rs.to16k(b"\x00\x10" * 480, 24000) for _ in range(50))
    assert abs(len(out) / 32 + rs.delay_ms - 1000) < 0.1
    assert 0 <= rs.delay_ms < 40


def test_settings_flag_then_env_then_default(monkeypatch):
    monkeypatch.setenv("GATEWAY_ASR_ADDRS", "10.0.0.1:1,10.0.0.2:1")
    monkeypatch.setenv("GATEWAY_PORT", "9000")
    s = load_settings(GatewaySettings, "GATEWAY_", ["--port", "9100"])
    assert s.port == 9100
    assert s.addrs("asr") == ["10.0.0.1:1", "10.0.0.2:1"]
    assert s.addrs("tts") == ["127.0.0.1:50055"]
    assert s.addrs("tts", canary=True) == []
