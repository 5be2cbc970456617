"""One person talking to the assistant, as the load test plays them: the
pacing and the measurements, without sockets or a clock of their own.

Why it is a separate module: the figures a capacity decision rests on must be
provably the protocol's own times. ``Speaker`` only reads a session's event
log (each event stamped with its arrival time), plays clips into a
microphone and reads an injected clock, so a unit test drives it with a
scripted event log on a virtual clock and checks every reported number
against the events (tests/unit/test_loadtests_conversation.py); the Locust
user (locustfile.py) wires it to a real WebSocket.

A turn, as a person lives it (issue #11):
  1. the microphone runs all the time at real time; the person says a real
     clip (silence around it is streamed too);
  2. voice_to_voice = first ``response.output_audio.delta`` after the clip's
     last voiced sample − that sample; final_transcript = the
     ``conversation.item.input_audio_transcription.completed`` after it − that
     sample (both from the clip's energy, not from the server's VAD);
  3. they listen to the whole answer: it plays from the first delta for the
     duration of the audio received (samples counted), then the client sends
     the ``conversation.item.truncate`` a browser sends when playback ends
     (``audio_end_ms`` = all of it);
  4. on a share of turns they cut in instead, after hearing part of it:
     barge_in_reaction = ``output_audio_buffer.cleared`` − the interruption's
     first voiced sample, and the truncate says what was heard by then; the
     interruption is the next question. A reply that played to its end
     (``output_audio_buffer.stopped``) before the server heard the person
     had nothing left to cut: no barge-in is measured, the turn completes
     as in 3, and the interruption is still the next question;
  5. they think ~1 s and speak again.
A share of the questions (``Pacing.doc_share``) can be questions about the
documents (loadtests/doc_questions.py): those turns are also reported as
``doc/voice_to_voice`` and ``doc/llm_first_token``, so the capacity report
shows what the costliest turn gets under load.
turn = last voiced sample → end of listening (or the cut); a failed turn's
exception starts with its error code (``timeout``, ``server_busy``, ...)."""
from __future__ import annotations

import dataclasses
import json
import random
from typing import Any, Callable, Protocol, Sequence

from clients import events
from clients.clips import Clip
from clients.eventlog import EventLog, ServerEvent

# The server-side stages reported per turn (services/gateway/timings.py).
SERVER_STAGES = ("speech_end", "endpoint", "asr_final", "asr_wait", "transcript", "llm_first_token",
                 "first_clause", "tts_first_audio", "audio_ready", "preempt_lead", "interim_gap",
                 "voice_to_voice")

Report = Callable[[str, float, "Exception | None"], None]   # (name, milliseconds, failure)


class Clock(Protocol):
    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class Utterance(Protocol):
    def time_of(self, offset: int) -> float: ...


class Microphone(Protocol):
    def play(self, pcm: bytes) -> Utterance: ...


class Session(Protocol):
    log: EventLog

    def mark(self) -> int: ...
    def send(self, event: dict[str, Any]) -> str: ...
    def wait_for(self, type_: str | tuple[str, ...] | None = None, *, timeout: float = 30,
                 where: Callable[[ServerEvent], bool] | None = None, since: int = 0) -> ServerEvent: ...


class TurnFailed(Exception):
    """A failed figure; ``str()`` starts with the code, so Locust's failure
    table groups failures by cause."""

    def __init__(self, code: str, detail: str = "", retry_after_s: float | None = None) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.retry_after_s = retry_after_s    # the server's hint with server_busy


@dataclasses.dataclass(frozen=True)
class Pacing:
    barge_in_share: float = 0.25                   # turns on which the person cuts in
    listen_before_barge_s: tuple[float, float] = (0.6, 1.5)  # heard before cutting in
    think_s: tuple[float, float] = (0.8, 1.2)     # pause between the answer and the next question
    turn_timeout_s: float = 30.0                   # an answer later than this is a failed turn
    out_rate: int = 24000                          # the session's output PCM rate
    doc_share: float = 0.0                         # questions drawn from the document questions


def audio_samples(log: EventLog, response_id: str | None, until: float | None = None) -> int:
    """Samples of a response's audio received (by ``until``, if given). The
    sync client keeps the byte count in ``bytes`` and drops the base64."""
    n = 0
    for ev in log.all("response.output_audio.delta", where=lambda e: e.get("response_id") == response_id):
        if until is not None and ev.t > until:
            break
        n += int(ev.get("bytes") or len(ev.get("delta") or "") * 3 // 4)
    return n // 2


def error_code(ev: ServerEvent | None, default: str) -> str:
    """The code of an ``error`` event, or of a failed ``response.done``."""
    if ev is None:
        return default
    if ev.type == "error":
        return str((ev.get("error") or {}).get("code") or default)
    details = (ev.get("response") or {}).get("status_details") or {}
    return str((details.get("error") or {}).get("code") or details.get("reason") or default)


class Speaker:
    """One user's conversation; ``turn()`` plays one question and its answer."""

    def __init__(self, session: Session, mic: Microphone, clips: Sequence[Clip], clock: Clock,
                 report: Report, pacing: Pacing = Pacing(), rng: random.Random | None = None,
                 doc_clips: Sequence[Clip] = ()) -> None:
        self.session, self.mic, self.clips, self.clock = session, mic, clips, clock
        self.report, self.pacing = report, pacing
        self.rng = rng or random.Random()
        self.doc_clips = doc_clips
        self.doc_turn = False                                     # the question now answered is about the documents
        self.pending: tuple[Clip, Utterance, int, bool] | None = None  # an interruption already spoken
        self.cut: set[str] = set()                                # responses this user cut
        self._first_index = 0                                     # where the current answer starts

    # -- the loop -----------------------------------------------------------------------------
    def pick(self) -> tuple[Clip, bool]:
        """The next question, and whether it is about the documents."""
        if self.doc_clips and self.rng.random() < self.pacing.doc_share:
            return self.rng.choice(self.doc_clips), True
        return self.rng.choice(self.clips), False

    def turn(self) -> None:
        if self.pending is None:
            clip, self.doc_turn = self.pick()
            mark = self.session.mark()
            utt = self.mic.play(clip.pcm)
        else:
            clip, utt, mark, self.doc_turn = self.pending
            self.pending = None
        t_last = utt.time_of(clip.span.last_sample)
        try:
            self._answer(clip, t_last, mark)
        except (TurnFailed, TimeoutError, ConnectionError) as exc:
            fail = exc if isinstance(exc, TurnFailed) else TurnFailed(
                "timeout" if isinstance(exc, TimeoutError) else "connection_lost", str(exc))
            fail.add_note(self._story(mark, t_last))
            self.report("turn", max(0.0, self.clock.now() - t_last) * 1000, fail)
        if self.pending is None:
            self.clock.sleep(self.rng.uniform(*self.pacing.think_s))

    def _story(self, mark: int, t_last: float, most: int = 30) -> str:
        """What the server said since the question, for a failed turn: the
        event types with their time after the question's last voiced sample
        (audio deltas counted, not listed). A timeout alone does not say
        whether the speech was missed, the transcript lost or the answer stalled."""
        evs = [e for e in self.session.log.all(since=mark) if e.type != "response.output_audio.delta"]
        deltas = len(self.session.log.all("response.output_audio.delta", since=mark))
        told = [f"{e.type}@{e.t - t_last:+.2f}s" for e in evs[-most:]]
        return f"session events since the question ({deltas} audio deltas): " + " ".join(told)

    def _answer(self, clip: Clip, t_last: float, mark: int) -> None:
        s, p = self.session, self.pacing
        first = s.wait_for("response.output_audio.delta", since=mark,
                           timeout=max(0.0, t_last + p.turn_timeout_s - self.clock.now()),
                           where=lambda e: e.t > t_last and e.get("response_id") not in self.cut)
        self.report("voice_to_voice", (first.t - t_last) * 1000, None)
        if self.doc_turn:
            self.report("doc/voice_to_voice", (first.t - t_last) * 1000, None)
        self._report_transcript(t_last, mark)
        rid, item = first.get("response_id"), first.get("item_id")
        if self.rng.random() < p.barge_in_share:
            at = first.t + self.rng.uniform(*p.listen_before_barge_s)
            self.clock.sleep(max(0.0, at - self.clock.now()))
            if not self._over(rid, first.t, margin_s=1.0) and self._barge_in(rid, item, first, t_last):
                return
        done = self._wait_done(rid, first)
        heard_s = audio_samples(s.log, rid) / p.out_rate
        end = max(first.t + heard_s, done.t)
        self.clock.sleep(max(0.0, end - self.clock.now()))            # listen to all of it
        s.send(events.truncate(item, int(heard_s * 1000)))           # playback ended
        self._judge(mark, done, t_last)
        self._report_server(done, (first.t - t_last) * 1000)
        self.report("turn", (end - t_last) * 1000, None)

    def _report_server(self, done: ServerEvent, v2v_ms: float) -> None:
        """The server's own breakdown of the turn (``response.done``'s
        metadata.timings, timings.py) as ``server/<stage>`` figures: where
        the voice-to-voice time went, turn by turn, under this load. And
        ``client_lag``: this client's voice-to-voice minus the server's, the
        time between the sound and the server that the server cannot see:
        mostly the VAD's end of speech coming after the sound's (silero's
        hangover that the energy gate does not take back), the microphone's
        frame, then a late send or read (docs/capacity-rechecks.md, re-check
        10: running the load generator at a higher priority changed nothing)."""
        raw = ((done.get("response") or {}).get("metadata") or {}).get("timings")
        try:
            timings = json.loads(raw) if raw else {}
        except ValueError:
            return
        for key in SERVER_STAGES:
            v = timings.get(f"{key}_ms")
            if isinstance(v, (int, float)):
                self.report(f"server/{key}", float(v), None)
                if self.doc_turn and key == "llm_first_token":
                    self.report("doc/llm_first_token", float(v), None)
        server_v2v = timings.get("voice_to_voice_ms")
        if isinstance(server_v2v, (int, float)):
            self.report("client_lag", v2v_ms - float(server_v2v), None)

    def _wait_done(self, rid: str, first: ServerEvent) -> ServerEvent:
        """The reply's ``response.done``, however long the answer: the server
        paces audio at real time, so a 40 s answer ends 40 s after its first
        delta. Only an answer that stalls (no audio, no done, for the turn
        timeout) fails the turn."""
        s, limit = self.session, self.pacing.turn_timeout_s
        self._first_index = first.index
        is_done = lambda e: (e.get("response") or {}).get("id") == rid  # noqa: E731
        while True:
            last = self._last_audio_t(rid, first.t)
            try:
                return s.wait_for("response.done", since=first.index, where=is_done,
                                  timeout=max(0.0, last + limit - self.clock.now()))
            except TimeoutError:
                if self._last_audio_t(rid, first.t) > last:
                    continue
                raise TurnFailed("timeout", f"answer stalled: no audio and no response.done for {limit:g} s")

    def _last_audio_t(self, rid: str, default: float) -> float:
        deltas = self.session.log.all("response.output_audio.delta", since=self._first_index,
                                      where=lambda e: e.get("response_id") == rid)
        return deltas[-1].t if deltas else default

    def _report_transcript(self, t_last: float, mark: int) -> None:
        """The final transcript normally precedes the first audio (the LLM
        needs it); when it is late it is waited for, within the turn timeout."""
        s = self.session
        try:
            ev = s.wait_for("conversation.item.input_audio_transcription.completed", since=mark,
                            timeout=max(0.0, t_last + self.pacing.turn_timeout_s - self.clock.now()),
                            where=lambda e: e.t > t_last)
        except TimeoutError as exc:
            self.report("final_transcript", self.pacing.turn_timeout_s * 1000, TurnFailed("timeout", str(exc)))
            return
        self.report("final_transcript", (ev.t - t_last) * 1000, None)

    def _judge(self, mark: int, done: ServerEvent, t_last: float) -> None:
        """A turn fails on a server error, a reply that did not complete, or a
        question the server split in two (a reply it had to cancel)."""
        log = self.session.log
        errors = log.errors(since=mark)
        if errors:
            raise TurnFailed(error_code(errors[0], "error"), str(errors[0].get("error")))
        status = (done.get("response") or {}).get("status")
        if status != "completed":
            raise TurnFailed(error_code(done, str(status)), f"response {status}")
        split = log.all("response.done", since=mark, where=lambda e: e.t <= done.t and (
            (e.get("response") or {}).get("status") == "cancelled"
            and (e.get("response") or {}).get("id") not in self.cut))
        if split:
            raise TurnFailed("split_turn", f"{len(split)} reply cancelled while the question was spoken")

    def _over(self, rid: str, t_first: float, margin_s: float) -> bool:
        """True when the answer is (nearly) heard to its end: too late to cut in."""
        done = self.session.log.find("response.done", where=lambda e: (e.get("response") or {}).get("id") == rid)
        if done is None:
            return False
        end = t_first + audio_samples(self.session.log, rid) / self.pacing.out_rate
        return end - self.clock.now() < margin_s

    def _barge_in(self, rid: str, item: str, first: ServerEvent, t_last: float) -> bool:
        """Cut in on the reply; False when it played to its end before the
        server heard the person (a short reply: nothing left to cut, and the
        interruption is just the next question; the turn completes as usual)."""
        s, p = self.session, self.pacing
        t_first = first.t
        clip, about_docs = self.pick()
        mark = s.mark()
        utt = self.mic.play(clip.pcm)
        t_on = utt.time_of(clip.span.first_sample)
        self.pending = (clip, utt, mark, about_docs)   # whatever happens, the interruption is the next question
        timeout = lambda: max(0.0, t_on + p.turn_timeout_s - self.clock.now())  # noqa: E731
        try:
            ev = s.wait_for(("output_audio_buffer.cleared", "output_audio_buffer.stopped"), since=first.index,
                            timeout=timeout(), where=lambda e: e.get("response_id") == rid
                            if e.type == "output_audio_buffer.stopped"
                            else e.index >= mark and e.get("response_id") in (rid, None))
            if ev.type == "output_audio_buffer.stopped":
                heard = s.log.find("input_audio_buffer.speech_started", since=mark)
                if heard is None or heard.t > ev.t:
                    return False
                # Heard while the reply still played: the server owed a cut.
                ev = s.wait_for("output_audio_buffer.cleared", since=mark, timeout=timeout(),
                                where=lambda e: e.get("response_id") in (rid, None))
            cleared = ev
        except TimeoutError as exc:
            self.report("barge_in_reaction", p.turn_timeout_s * 1000, TurnFailed("timeout", str(exc)))
            raise
        self.report("barge_in_reaction", max(0.0, cleared.t - t_on) * 1000, None)
        heard_ms = min(cleared.t - t_first, audio_samples(s.log, rid, cleared.t) / p.out_rate) * 1000
        s.send(events.truncate(item, int(max(0.0, heard_ms))))          # playback was cut
        self.cut.add(rid)
        errors = s.log.errors(since=mark)
        if errors:
            raise TurnFailed(error_code(errors[0], "error"), str(errors[0].get("error")))
        self.report("turn", (cleared.t - t_last) * 1000, None)
        return True


def connect_failure(log: EventLog, exc: BaseException) -> TurnFailed:
    """Why a connect failed: the server's ``error`` code (``server_busy`` from
    admission control) when it sent one, else the transport's failure."""
    errors = log.errors()
    if errors:
        retry = (errors[0].get("error") or {}).get("retry_after_s")
        return TurnFailed(error_code(errors[0], "error"), str(errors[0].get("error")),
                          float(retry) if retry is not None else None)
    code = "timeout" if isinstance(exc, TimeoutError) else "connect_failed"
    return TurnFailed(code, repr(exc))


def turn_detection(env) -> dict | bool:
    """LOAD_TURN_DETECTION: server_vad (True: the server's defaults) or semantic_vad[:eagerness]."""
    kind, _, eagerness = env.get("LOAD_TURN_DETECTION", "server_vad").partition(":")
    if kind == "server_vad":
        return True
    if kind == "semantic_vad":
        return {"type": "semantic_vad", "eagerness": eagerness or "auto"}
    raise ValueError(f"LOAD_TURN_DETECTION {kind!r}: use server_vad or semantic_vad[:low|medium|high|auto]")
