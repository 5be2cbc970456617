"""Locust users that talk to the gateway over the Realtime protocol: each
holds one WebSocket session, streams real speech at real time (a live
microphone: clips, and silence between them), waits for the spoken reply and
records voice-to-voice latency (last voiced sample → first audio delta) as a
custom request; now and then it barges in on the reply and records the
barge-in reaction (first voiced sample of the interruption → cleared).

Only this machine is a target: a --host that is not loopback is refused.

    locust -f loadtests/locustfile.py --headless -u 3 -r 1 -t 60s --host ws://127.0.0.1:8000
(loadtests/run.py starts the stack and does this for you.)"""
from __future__ import annotations

import os
import random
import time
from urllib.parse import urlparse

from locust import User, between, task

from clients import events
from clients.realtime_sync import SyncRealtimeClient
from clients.speech import voiced_span
from common.audio import read_wav
from tests.procs import clips

RATE = 16000                      # the clips' own rate; no client-side resampling under load
BARGE_IN_SHARE = float(os.environ.get("LOAD_BARGE_IN_SHARE", "0.25"))
TURN_TIMEOUT = float(os.environ.get("LOAD_TURN_TIMEOUT_S", "60"))
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _load():
    out = []
    for path, _ in clips():
        pcm, rate = read_wav(path)
        assert rate == RATE, f"{path} is {rate} Hz"
        out.append((path.stem, pcm, voiced_span(pcm, RATE)))
    return out


CLIPS = _load()


class RealtimeVoiceUser(User):
    """One spoken conversation per simulated user."""
    wait_time = between(1, 3)

    def on_start(self) -> None:
        host = self.host or "ws://127.0.0.1:8000"
        if urlparse(host).hostname not in LOOPBACK:
            raise RuntimeError(f"load tests only target this machine, not {host}")
        self.url = host.rstrip("/") + "/v1/realtime"
        t0 = time.perf_counter()
        self.rt = SyncRealtimeClient(self.url, timeout=30)
        try:
            self.rt.connect()
            self.rt.update_session(events.session_config(input_rate=RATE, output_rate=24000))
        except Exception as exc:
            self._fire("session", "connect", t0, exc=exc)
            raise
        self._fire("session", "connect", t0)
        self.mic = self.rt.start_microphone(RATE)

    def on_stop(self) -> None:
        self.rt.close()

    def _fire(self, kind: str, name: str, t0: float | None = None, ms: float | None = None,
              exc: Exception | None = None, length: int = 0) -> None:
        if ms is None:
            ms = (time.perf_counter() - (t0 or time.perf_counter())) * 1000
        self.environment.events.request.fire(request_type=kind, name=name, response_time=ms,
                                             response_length=length, exception=exc, context={})

    def _is(self, rid):
        return lambda e: (e.get("response") or {}).get("id") == rid

    @task
    def talk(self) -> None:
        rt = self.rt
        name, pcm, span = random.choice(CLIPS)
        mark = rt.mark()
        utt = self.mic.play(pcm)
        t_start = time.perf_counter()
        try:
            first = rt.wait_for("response.output_audio.delta", since=mark, timeout=TURN_TIMEOUT)
        except Exception as exc:
            self._fire("voice", "voice_to_voice", t_start, exc=exc)
            return
        self._fire("voice", "voice_to_voice", ms=(first.t - utt.time_of(span.last_sample)) * 1000)
        rid = first.get("response_id")

        if random.random() < BARGE_IN_SHARE:
            time.sleep(0.5)
            _, pcm2, span2 = random.choice(CLIPS)
            mark2 = rt.mark()
            utt2 = self.mic.play(pcm2)
            try:
                cleared = rt.wait_for("output_audio_buffer.cleared", since=mark2, timeout=TURN_TIMEOUT)
                self._fire("voice", "barge_in_reaction",
                           ms=(cleared.t - utt2.time_of(span2.first_sample)) * 1000)
                rt.truncate(first.get("item_id"))
                done = rt.wait_for("response.done", where=self._is(rid), timeout=TURN_TIMEOUT)
                # the reply may legitimately finish before the user cut in
                ok = (done.get("response") or {}).get("status") in ("cancelled", "completed")
                self._fire("voice", "interrupted_response", t_start,
                           exc=None if ok else RuntimeError(f"interrupted reply ended {done.data}"))
                # the interruption is a turn of its own: wait for its answer to finish
                rt.wait_for("response.done", since=done.index + 1, timeout=TURN_TIMEOUT)
            except Exception as exc:
                self._fire("voice", "barge_in_reaction", t_start, exc=exc)
            return

        try:
            done = rt.wait_for("response.done", where=self._is(rid), timeout=TURN_TIMEOUT)
        except Exception as exc:
            self._fire("voice", "turn", t_start, exc=exc)
            return
        status = (done.get("response") or {}).get("status")
        self._fire("voice", "turn", t_start,
                   exc=None if status == "completed" else RuntimeError(f"response {status}"))
        errors = rt.log.errors(since=mark)
        if errors:
            self._fire("voice", "server_error", ms=0,
                       exc=RuntimeError(str(errors[0].get("error"))))
