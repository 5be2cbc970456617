"""Locust users that talk to the gateway over the Realtime protocol like
people do (loadtests/conversation.py says how, and what each figure means):
a live microphone at real time, a real clip per question, the whole answer
listened to, a truncate as a browser sends it, barge-ins on a share of turns,
a second of thought. Every figure is a Locust request event (type ``voice``;
``session``/``connect`` for the connect), so it lands in Locust's stats, CSV
and HTML report; with ``LOAD_SAMPLES=path`` every figure is also appended
there as a JSON line, unrounded, for the SLO gate and the capacity report.

Only this machine is a target: a --host that is not loopback is refused.

    locust -f loadtests/locustfile.py --headless -u 2 -r 0.5 -t 60s --host ws://127.0.0.1:8000
    LOAD_SHAPE=step LOAD_STEP_USERS=1 LOAD_STEP_SECONDS=60 LOAD_MAX_USERS=4 locust -f ... --headless

Environment: LOAD_BARGE_IN_SHARE (default 0.25), LOAD_TURN_TIMEOUT_S (30),
LOAD_THINK_S (1.0), LOAD_SHAPE (steady|step), LOAD_STEP_* (see shapes.py),
LOAD_ECHO ("DELAY_MS,LEVEL_DB", e.g. "120,-10": every user on loudspeakers, the
answers echoing into the microphone, clients/echo.py; default empty: none),
LOAD_TURN_DETECTION ("server_vad", the default, or "semantic_vad[:EAGERNESS]",
e.g. "semantic_vad:auto": the end-of-turn model decides the window),
LOAD_DOC_CLIPS (a folder of spoken document questions, loadtests/doc_questions.py)
with LOAD_DOC_SHARE (the share of questions drawn from it; default 0)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from urllib.parse import urlparse

from locust import LoadTestShape, User, constant, events as locust_events, task

from clients import events
from clients.clips import load_clips
from clients.echo import attach_echo, room_from_env
from clients.realtime_sync import SyncRealtimeClient
from loadtests.conversation import Pacing, Speaker, connect_failure, turn_detection
from loadtests.shapes import StepSchedule

RATE = 16000                      # the clips' own rate; no client-side resampling under load
OUT_RATE = 24000
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CLIPS = load_clips(rate=RATE)
DOC_CLIPS = load_clips(Path(os.environ["LOAD_DOC_CLIPS"]), rate=RATE) if os.environ.get("LOAD_DOC_CLIPS") else []


def pacing_from_env(env: dict[str, str] = os.environ) -> Pacing:  # type: ignore[assignment]
    think = float(env.get("LOAD_THINK_S", "1.0"))
    doc_share = float(env.get("LOAD_DOC_SHARE", "0"))
    if not 0.0 <= doc_share <= 1.0:
        raise ValueError(f"LOAD_DOC_SHARE {doc_share:g}: a share, within 0..1")
    if doc_share > 0 and not env.get("LOAD_DOC_CLIPS"):
        raise ValueError("LOAD_DOC_SHARE without LOAD_DOC_CLIPS: no document questions to draw from "
                         "(python -m loadtests.doc_questions speaks them)")
    return Pacing(barge_in_share=float(env.get("LOAD_BARGE_IN_SHARE", "0.25")),
                  turn_timeout_s=float(env.get("LOAD_TURN_TIMEOUT_S", "30")),
                  think_s=(0.8 * think, 1.2 * think), out_rate=OUT_RATE,
                  doc_share=doc_share)


def check_loopback(host: str) -> None:
    if urlparse(host).hostname not in LOOPBACK:
        raise RuntimeError(f"load tests only target this machine, not {host}")


class SystemClock:
    now = staticmethod(time.monotonic)      # the event log's and microphone's clock
    sleep = staticmethod(time.sleep)        # a greenlet sleep under Locust's gevent


class StartedMic:
    """The sync microphone, returning an utterance only once its first sample
    is scheduled, so its sample times are known."""

    def __init__(self, mic) -> None:
        self.mic = mic

    def play(self, pcm: bytes):
        utt = self.mic.play(pcm)
        while utt.start_sample is None:
            time.sleep(0.005)
        return utt


class RealtimeVoiceUser(User):
    """One person in one spoken conversation."""
    wait_time = constant(0)   # the pacing (listening, thinking) is the Speaker's own

    def on_start(self) -> None:
        self.url = (self.host or "ws://127.0.0.1:8000").rstrip("/")
        check_loopback(self.url)
        self.url += "/v1/realtime"
        self.rt: SyncRealtimeClient | None = None
        self.speaker: Speaker | None = None

    def on_stop(self) -> None:
        if self.rt is not None:
            self.rt.close()

    def fire(self, name: str, ms: float, exc: Exception | None = None, kind: str = "voice") -> None:
        if name.startswith("server/"):
            kind = "server"    # the server's own breakdown (conversation.SERVER_STAGES)
        self.environment.events.request.fire(request_type=kind, name=name, response_time=ms,
                                             response_length=0, exception=exc, context={})

    def connect(self) -> None:
        """A refused connect (``server_busy``) is a failed ``connect`` named by
        its code; the person tries again when the server's retry_after_s says (else 5 s)."""
        t0 = time.monotonic()
        rt = SyncRealtimeClient(self.url, timeout=30)
        try:
            rt.connect()
            rt.update_session(events.session_config(input_rate=RATE, output_rate=OUT_RATE,
                                                    turn_detection=turn_detection(os.environ)))
        except Exception as exc:
            failure = connect_failure(rt.log, exc)
            self.fire("connect", (time.monotonic() - t0) * 1000, failure, "session")
            rt.close()
            time.sleep(failure.retry_after_s or 5.0)    # as the server hinted (server_busy)
            return
        self.fire("connect", (time.monotonic() - t0) * 1000, None, "session")
        self.rt = rt
        raw_mic = rt.start_microphone(RATE)
        room = room_from_env(os.environ.get("LOAD_ECHO", ""))
        if room is not None:      # every user on loudspeakers: their answers echo into their mics
            attach_echo(rt, raw_mic, room)
        mic = StartedMic(raw_mic)
        self.speaker = Speaker(rt, mic, CLIPS, SystemClock(), self.fire, pacing_from_env(), doc_clips=DOC_CLIPS)

    @task
    def talk(self) -> None:
        if self.speaker is None:
            self.connect()
            return
        self.speaker.turn()
        if self.rt is not None and self.rt.closed:  # the server hung up (the turn failed): reconnect
            self.rt.close()
            self.rt = self.speaker = None


@locust_events.init.add_listener
def _record_samples(environment, **_kw) -> None:
    """Every figure, unrounded, as a JSON line (Locust rounds its percentiles)."""
    path = os.environ.get("LOAD_SAMPLES")
    if not path:
        return
    out = open(path, "a", buffering=1)

    def on_request(request_type, name, response_time, exception=None, **_kw) -> None:
        users = environment.runner.user_count if environment.runner else 0
        code = getattr(exception, "code", type(exception).__name__) if exception else None
        sample = {"t": time.time(), "type": request_type, "name": name,
                  "ms": round(float(response_time), 1), "ok": exception is None,
                  "code": code, "users": users}
        if exception is not None:   # what the server said before the failure (conversation.py)
            sample["detail"] = " | ".join([str(exception)] + list(getattr(exception, "__notes__", [])))
        out.write(json.dumps(sample) + "\n")

    environment.events.request.add_listener(on_request)


if os.environ.get("LOAD_SHAPE", "steady") == "step":
    class StepLoad(StepSchedule, LoadTestShape):
        """Picked up by Locust because it is defined here (LOAD_SHAPE=step)."""
