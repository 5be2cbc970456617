"""Real spoken traffic for a drill: a few people talking to the assistant over
the Realtime WebSocket (the project's real clips, streamed at real time by a
live microphone), each turn's outcome recorded with its times, so a drill
can tell when things went wrong and when the first turn worked again.

A client of the protocol only (clients/): it imports nothing from services/.

Each speaker keeps one session for the whole drill: surviving a fault means
the session goes on, so a speaker never reconnects because of an error
event. It reconnects only when the server closes the socket (a gateway
restart), resuming its session by id. What it saw done (each
``conversation.item.done`` id, per session) is what ``lost_items`` later
checks the gateway still remembers.

With ``new_session_every`` a speaker instead starts a new conversation after
that many turns (people come and go): a release's weight applies to new
sessions only, so the canary drill needs them to see its share move."""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import logging
import time
from typing import Sequence

from clients import events
from clients.clips import Clip
from clients.realtime import RealtimeClient

log = logging.getLogger(__name__)
TURN_TIMEOUT_S = 45.0
THINK_S = 1.0
# A turn that got an error event or speech_stopped and, this long after it,
# no response at all (the ASR lost: no words, so no turn) is over for the
# person speaking. Normally response.created follows speech_stopped within
# the final timeout (5 s) at worst.
GIVE_UP_AFTER_ERROR_S = 10.0


@dataclasses.dataclass
class Turn:
    speaker: int
    spoken_at: float             # monotonic: the clip's last sample was sent
    ended_at: float              # response.done, the error, or the timeout
    outcome: str                 # completed | failed | cancelled | no_answer | refused | closed
    errors: list[str] = dataclasses.field(default_factory=list)   # "code: message" of error events
    listen_s: float = 0.0        # its answer's audio, heard after ended_at (at most 15 s)

    @property
    def ok(self) -> bool:
        return self.outcome == "completed"


@dataclasses.dataclass
class Speaker:
    index: int
    session_id: str | None = None
    sessions: dict[str, list[str]] = dataclasses.field(default_factory=dict)   # id -> items seen done
    refused: int = 0
    turns_in_session: int = 0
    leaving: bool = False        # ends after its current turn (Traffic.leave)

    @property
    def items_done(self) -> list[str]:
        """Items seen done in the current session."""
        return self.sessions.get(self.session_id or "", [])


class Traffic:
    """``users`` speakers talking until ``stop()``; ``turns`` fills as they go."""

    def __init__(self, ws_url: str, clips: Sequence[Clip], users: int = 2, think_s: float = THINK_S,
                 new_session_every: int = 0) -> None:
        self.ws_url, self.clips, self.think_s = ws_url, list(clips), think_s
        self.new_session_every = new_session_every
        self.speakers = [Speaker(i) for i in range(users)]
        self.turns: list[Turn] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        for sp in self.speakers:
            self._tasks.append(asyncio.create_task(self._run(sp), name=f"drill-speaker-{sp.index}"))

    async def stop(self, timeout: float = TURN_TIMEOUT_S + 10) -> None:
        """Let each speaker finish its turn, then close (bounded)."""
        self._stop.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for t in pending:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def join(self, n: int) -> list[Speaker]:
        """``n`` more people start talking now (an overload drill's arrivals)."""
        new = [Speaker(len(self.speakers) + i) for i in range(n)]
        self.speakers += new
        for sp in new:
            self._tasks.append(asyncio.create_task(self._run(sp), name=f"drill-speaker-{sp.index}"))
        return new

    @staticmethod
    def leave(speakers: Sequence[Speaker]) -> None:
        """These people stop after their current turn (or connection attempt)."""
        for sp in speakers:
            sp.leaving = True

    def ok_after(self, t: float) -> Turn | None:
        """The first completed turn spoken after ``t``."""
        return next((x for x in sorted(self.turns, key=lambda x: x.ended_at)
                     if x.ok and x.spoken_at >= t), None)

    def summary(self) -> str:
        """The turns' outcomes and distinct errors so far, for a message."""
        outcomes = dict(collections.Counter(t.outcome for t in self.turns))
        errors = sorted({e for t in self.turns for e in t.errors})
        return f"turns {outcomes or 'none'}, errors {errors[:5] or 'none'}"

    # -- one speaker ------------------------------------------------------------------
    async def _run(self, sp: Speaker) -> None:
        clips = itertools.cycle(self.clips[sp.index:] + self.clips[:sp.index])
        while not self._stop.is_set() and not sp.leaving:
            rt = RealtimeClient(self.ws_url, keep_audio=False, session_id=sp.session_id)
            try:
                created = await rt.connect()
            except Exception as exc:  # noqa: BLE001 - refused (server_busy) or gateway away: try again
                now = time.monotonic()
                self.turns.append(Turn(sp.index, now, now, "refused", [f"connect: {exc}"]))
                sp.refused += 1
                await rt.close()
                await self._pause(2.0)
                continue
            sid = (created.get("session") or {}).get("id") or sp.session_id
            if sid != sp.session_id:
                sp.turns_in_session = 0
            sp.session_id = sid
            if sid:
                sp.sessions.setdefault(sid, [])
            try:
                await self._talk(sp, rt, clips)
            except Exception as exc:  # noqa: BLE001 - any failure of one connection; cancellation passes
                # The socket closed or the server was slow to reply mid-setup (a
                # gateway restarting under load): recorded, then reconnect. An
                # escaped exception would end this speaker's task, and the
                # drill would wait for turns nobody speaks any more.
                now = time.monotonic()
                self.turns.append(Turn(sp.index, now, now, "closed", [f"session: {exc!r}"]))
                await self._pause(1.0)
            finally:
                await rt.close()

    async def _talk(self, sp: Speaker, rt: RealtimeClient, clips) -> None:
        rate = self.clips[0].rate
        await rt.update_session(events.session_config(input_rate=rate, output_rate=24000))
        mic = rt.start_microphone(rate)
        seen = 0
        while not self._stop.is_set() and not sp.leaving:
            clip = next(clips)
            mark = rt.mark()
            spoken_ok = await self._say(rt, mic, clip.pcm)
            spoken = time.monotonic()
            outcome, audio_s = await self._outcome(rt, mark) if spoken_ok else ("closed", 0.0)
            errors = [f"{(e.get('error') or {}).get('code')}: {(e.get('error') or {}).get('message')}"
                      for e in rt.log.events[mark:] if e.type == "error"]
            # Recorded when it ended (response.done), not after the listening:
            # a drill's recovery is the first answer, not the end of its audio.
            self.turns.append(Turn(sp.index, spoken, time.monotonic(), outcome, errors, audio_s))
            for e in rt.log.events[seen:]:
                if e.type == "conversation.item.done":
                    sp.sessions.setdefault(sp.session_id or "", []).append((e.get("item") or {}).get("id"))
            seen = len(rt.log.events)
            # Playback: a listener hears the whole answer before speaking again.
            await self._pause(audio_s)
            if outcome == "closed":
                return                      # reconnect and resume
            sp.turns_in_session += 1
            if self.new_session_every and sp.turns_in_session >= self.new_session_every:
                sp.session_id = None        # this person is done; the next one starts a conversation
                await self._pause(self.think_s)
                return
            await self._pause(self.think_s)

    async def _say(self, rt: RealtimeClient, mic, pcm: bytes) -> bool:
        """Speak a clip; False if the connection ended meanwhile (the
        microphone stops with it and the clip would never finish)."""
        utt = mic.play(pcm)
        while not utt.done.done():
            if rt.closed:
                return False
            await asyncio.wait({utt.done}, timeout=0.5)
        return not utt.done.cancelled()

    async def _outcome(self, rt: RealtimeClient, mark: int) -> tuple[str, float]:
        """How the turn just spoken ended (its response.done status, or why none
        came), and how long its answer's audio plays (s, at most 15)."""
        deadline = time.monotonic() + TURN_TIMEOUT_S
        while True:
            try:
                done = await rt.wait_for("response.done", since=mark, timeout=1.0)
                break
            except ConnectionError:
                return "closed", 0.0
            except TimeoutError:
                now = time.monotonic()
                # An error, or the end of speech, long ago and no response
                # started: no turn is coming (an ASR outage reports its error
                # once, so later turns only show the silence).
                sign = rt.log.find(("error", "input_audio_buffer.speech_stopped"), since=mark)
                if now >= deadline or (sign is not None and rt.log.find("response.created", since=mark) is None
                                       and now - sign.t > GIVE_UP_AFTER_ERROR_S):
                    return "no_answer", 0.0
        rid = (done.get("response") or {}).get("id")
        audio_ms = sum(e.get("bytes", 0) for e in rt.log.events[mark:]
                       if e.type == "response.output_audio.delta" and e.get("response_id") == rid) / 48.0
        return (done.get("response") or {}).get("status") or "unknown", min(audio_ms / 1000, 15.0)

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass


async def lost_items(ws_url: str, speakers: Sequence[Speaker]) -> dict[str, list[str]]:
    """Per session, the item ids its client saw done that the gateway no longer
    remembers (resumed by id: ``session.created`` lists what it remembers)."""
    lost: dict[str, list[str]] = {}
    for sp in speakers:
        for sid, seen in sp.sessions.items():
            if not sid or not seen:
                continue
            async with RealtimeClient(ws_url, keep_audio=False, session_id=sid) as rt:
                created = rt.log.find("session.created")
                remembered = {it.get("id") for it in (created.get("session") or {}).get("conversation_items", [])}
            missing = [i for i in seen if i not in remembered]
            if missing:
                lost[sid] = missing
    return lost
