"""End-of-turn model (Smart Turn v3.2 in the VAD) on real speech: the
probability at every stop, on the project's clips (ends of read sentences:
complete) and on the same clips with a pause cut in at a word boundary
(600/900/1200 ms of silence: the stop at the pause is incomplete, the one at
the end complete). Then the semantic_vad windows: for each candidate, the
share of pauses that would split the sentence and the silence a complete turn
waits, against server_vad's single window.

Word boundaries come from Whisper base's word timestamps (beam 5), moved to
the quietest 10 ms within 60 ms so no cut falls inside a sound. The VAD runs
in process with the gateway's settings (VadEngine + SmartTurnModel on one
thread each, the same code as the service); each stop's probability is the
one the service sends (scored at its pause), and the score at the stop itself
(128 ms more silence) is printed beside it.

`python -m bench turn_model`"""
from __future__ import annotations

import statistics
import time

import numpy as np

from common.audio import read_wav, silence
from services.gateway.settings import GatewaySettings
from services.vad.engine import VadEngine
from services.vad.segmenter import SegmenterParams, SpeechStart, SpeechStop
from services.vad.turn_model import SmartTurnModel
from tests.procs import clips

PAUSES_MS = (600, 900, 1200)
LEAD_MS, TAIL_MS = 1000, 1500
START_DELAY_MS = 150   # speech start decided ~min_speech after the onset: a pause must outlast the window by this


def word_bounds() -> dict[str, list[tuple[str, float, float]]]:
    from faster_whisper import WhisperModel
    from services.asr import models

    m = WhisperModel(str(models.resolve("base")), device="cpu", compute_type="int8", cpu_threads=1)
    out = {}
    for wav, _ in clips():
        segs, _ = m.transcribe(str(wav), language="en", word_timestamps=True, beam_size=5)
        out[wav.stem] = [(w.word.strip(), float(w.start), float(w.end)) for s in segs for w in s.words]
    return out


def quietest(pcm: bytes, ms: float, reach: int = 60) -> int:
    """The start (ms) of the quietest 10 ms window within ``reach`` ms of ``ms``."""
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    best, best_e = int(ms), None
    for t in range(int(ms) - reach, int(ms) + reach + 1, 5):
        a, b = t * 16, (t + 10) * 16
        if a < 0 or b > x.size:
            continue
        e = float(np.mean(x[a:b] ** 2))
        if best_e is None or e < best_e:
            best, best_e = t + 5, e
    return best


def cases() -> list[tuple[str, bytes, list[int], int]]:
    """(name, audio, inserted pause positions in ms, clip end in ms)."""
    words = word_bounds()
    out = []
    for i, (wav, _) in enumerate(clips()):
        pcm, rate = read_wav(wav)
        assert rate == 16000
        end = LEAD_MS + len(pcm) // 32
        out.append((wav.stem[-4:], silence(LEAD_MS, rate) + pcm + silence(TAIL_MS, rate), [], end))
        w = words[wav.stem]
        for k in range(2, len(w) - 1):
            cut = quietest(pcm, (w[k - 1][2] + w[k][1]) * 500)
            pause = PAUSES_MS[(i + k) % len(PAUSES_MS)]
            audio = silence(LEAD_MS, rate) + pcm[:cut * 32] + silence(pause, rate) + pcm[cut * 32:] + silence(TAIL_MS, rate)
            name = f"{wav.stem[-4:]} {' '.join(x[0] for x in w[:k])[-24:]!r} | {pause} ms"
            out.append((name, audio, [LEAD_MS + cut], end + pause))
    return out


def run(engine: VadEngine, model: SmartTurnModel, audio: bytes, s: GatewaySettings):
    """[(stop audio_ms, probability sent, probability at the stop, next start decided_at or None)]."""
    stream = engine.open(SegmenterParams(threshold=s.vad_threshold, min_speech_ms=s.vad_min_speech_ms,
                                         min_silence_ms=s.vad_min_silence_ms, end_of_turn=True))
    events = []
    for i in range(0, len(audio), 640):
        for ev in stream.push(audio[i:i + 640]).events:
            at_stop = model.predict(stream.turn_audio.window(ev.decided_at_ms)) \
                if isinstance(ev, SpeechStop) else None
            events.append((ev, at_stop))
    events += [(ev, None) for ev in stream.finish().events]
    stops = []
    for j, (ev, at_stop) in enumerate(events):
        if isinstance(ev, SpeechStop):
            nxt = next((e.decided_at_ms for e, _ in events[j:] if isinstance(e, SpeechStart)), None)
            stops.append((ev.audio_ms, ev.turn.result() if ev.turn else None, at_stop, nxt))
    return stops


def main() -> None:
    s = GatewaySettings(redis_url="")
    model = SmartTurnModel(threads=1)
    engine = VadEngine(threads=1, turn_model=model)
    t_words = time.perf_counter()
    all_cases = cases()
    print(f"{len(all_cases)} clips ({time.perf_counter() - t_words:.1f} s for word timestamps)")
    ends, pauses, other = [], [], []   # (prob sent, prob at stop[, gap to next start decided])
    print(f"{'clip':<52} {'stop ms':>7} {'kind':>6} {'p pause':>7} {'p stop':>7}")
    for name, audio, cuts, end in all_cases:
        stops = run(engine, model, audio, s)
        for stop_ms, p, p_stop, nxt in stops:
            if any(abs(stop_ms - c) <= 250 for c in cuts):
                kind, gap = "pause", (nxt - stop_ms if nxt else None)
                pauses.append((p, p_stop, gap))
            elif stop_ms == stops[-1][0]:
                kind = "end"
                ends.append((p, p_stop))
            else:
                kind = "other"
                other.append((p, p_stop))
            print(f"{name:<52} {stop_ms:>7} {kind:>6} {p:>7.3f} {p_stop:>7.3f}")

    t = [time.perf_counter()]
    probe = np.zeros(8 * 16000, np.float32)
    for _ in range(20):
        model.predict(probe)
        t.append(time.perf_counter())
    per = sorted(1000 * (b - a) for a, b in zip(t, t[1:]))
    print(f"\nmodel + features per decision, 1 thread: median {per[10]:.0f} ms, max {per[-1]:.0f} ms")

    thr = s.semantic_threshold
    for label, col in (("scored at the pause (sent)", 0), ("scored at the stop", 1)):
        e = [x[col] for x in ends]
        q = [x[col] for x in pauses]
        print(f"\n{label}: ends (complete) n={len(e)}: {sum(v >= thr for v in e)} >= {thr}, "
              f"median {statistics.median(e):.3f}, min {min(e):.3f}; "
              f"pauses (incomplete) n={len(q)}: {sum(v < thr for v in q)} < {thr}, "
              f"median {statistics.median(q):.3f}, max {max(q):.3f}; other stops {len(other)}")

    gaps = [g for _, _, g in pauses if g is not None]
    print(f"\npause → next start decided: min {min(gaps)} ms, max {max(gaps)} ms (a window shorter splits)")
    print(f"{'threshold':>9} {'complete/incomplete ms':>23} {'splits':>7} {'end wait: median':>17} "
          f"{'mean':>5} {'max':>5}")
    for thr in (0.5, 0.7, 0.8, 0.9):
        for complete_ms, incomplete_ms in ((200, 800), (200, 1500), (200, 3000), (300, 1500)):
            def window(p: float) -> int:
                return complete_ms if p >= thr else incomplete_ms
            splits = sum(1 for p, _, g in pauses if g is not None and window(p) < g)
            waits = [window(p) for p, _ in ends]
            print(f"{thr:>9} {complete_ms:>11} / {incomplete_ms:<9} {splits:>3}/{len(gaps):<3} "
                  f"{statistics.median(waits):>17.0f} {statistics.mean(waits):>5.0f} {max(waits):>5}")
    for window_ms in (500, 800, 1300):
        splits = sum(1 for g in gaps if window_ms < g)
        print(f"{'server_vad':>9} {window_ms:>11} ms{'':>9} {splits:>3}/{len(gaps):<3} {window_ms:>17} "
              f"{window_ms:>5} {window_ms:>5}")

if __name__ == "__main__":
    main()
