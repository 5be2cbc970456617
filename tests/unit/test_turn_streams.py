"""The stream bookkeeping of turn-taking (services/gateway/turn_streams.py) on the real ring buffer."""
from services.gateway.audio_in import RingBuffer
from services.gateway.turn_state import Segment
from services.gateway.turn_streams import Utterances, VadFeed

MS = 32   # bytes per ms of 16 kHz PCM16


def ring_with(ms: int, keep_ms: int = 6000) -> RingBuffer:
    ring = RingBuffer(keep_ms)
    for _ in range(ms // 10):
        ring.append(b"\x01\x00" * 160, 0.0)
    return ring


def test_vad_feed_sends_whole_chunks_only_and_keeps_the_rest():
    ring = ring_with(50)
    feed = VadFeed(ring)
    assert len(feed.due(32)) == 32 * MS          # one 32 ms chunk of the 50 ms
    assert feed.due(32) == b""                   # 18 ms left: less than a chunk
    ring.append(b"\x01\x00" * 16 * 14, 0.0)      # +14 ms: 32 ms waiting
    assert len(feed.due(32)) == 32 * MS
    assert feed.sent_to == 64


def test_vad_feed_restart_puts_time_zero_at_the_ring_end():
    ring = ring_with(100)
    feed = VadFeed(ring)
    feed.restart()
    assert feed.base_ms == feed.sent_to == 100
    assert feed.due(32) == b""


def test_unsent_returns_everything_once():
    ring = ring_with(40)
    u = Utterances(ring)
    assert len(u.unsent()) == 40 * MS
    assert u.unsent() == b""


def test_restart_rehears_the_open_segment_from_the_oldest_audio_kept():
    ring = ring_with(7000, keep_ms=6000)     # the ring holds 1000..7000
    u = Utterances(ring)
    old = Segment(500, 500)
    u.add(Segment(0, 0))
    u.add(old)
    old.flush_end_ms, old.flush_at, old.interim_end_ms = 6800, 1.0, 6500
    old.done.set()                            # given up on when the stream went
    u.restart(old)
    assert u.segments == {0: old} and u.next_index == 1
    assert not old.done.is_set()
    assert old.padded_ms == u.sent_to == ring.start_ms == 1000
    assert old.flush_end_ms is None and old.flush_at is None and old.interim_end_ms is None


def test_restart_with_a_settled_segment_sends_nothing_old():
    ring = ring_with(300)
    u = Utterances(ring)
    seg = Segment(0, 0)
    seg.final, seg.end_ms = "hello", 250
    seg.done.set()
    u.restart(seg)
    assert u.sent_to == 300 and seg.done.is_set() and seg.padded_ms == 0


def test_lost_stream_finalises_ended_segments_and_keeps_the_open_one():
    u = Utterances(ring_with(100))
    ended, spoken = Segment(0, 0), Segment(50, 50)
    ended.interim, spoken.interim = "what time", "is it"
    u.add(ended)
    u.add(spoken)
    u.lost(spoken)
    assert ended.final == "what time" and ended.done.is_set()
    assert spoken.final is None and not spoken.done.is_set()
    assert u.segments == {}
