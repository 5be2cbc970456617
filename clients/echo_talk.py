"""Conversations on loudspeakers, as the echo e2e test and benchmark run
them (clients/echo.py puts the assistant's voice back into the microphone):

- ``listen_through``: ask, then let the (long) answer play to its end with its
  echo in the microphone, counting how often the assistant interrupted
  itself: pauses (``output_audio_buffer.cleared``: the VAD took the echo for
  speech), cancels (a barge-in confirmed on it) and user turns made of it.
- ``barge_in``: ask, listen a while, then speak a real clip over the answer
  and its echo; the reaction is from the clip's first voiced sample to
  ``output_audio_buffer.cleared``.

A client of the protocol only."""
from __future__ import annotations

import asyncio
import dataclasses

from clients import events
from clients.clips import Clip
from clients.echo import EchoSpeaker, Room, attach_echo
from clients.realtime import RealtimeClient

# The VAD's onset may come a little before the energy-based first voiced sample.
EARLIEST_S = 0.1
# A tiny LLM stops early unless asked for length.
LONG_REPLY = ("You are a storyteller. Answer every message with a long story of at least "
              "eight full sentences. Never answer briefly.")


@dataclasses.dataclass
class Listened:
    room: Room
    status: str | None          # of the answer: completed unless it interrupted itself
    played_s: float            # answer audio the speaker played
    pauses: int                # output_audio_buffer.cleared during the answer
    user_turns: int            # turns committed after the question (its echo taken for the user)

    @property
    def interrupted(self) -> bool:
        """The assistant cut its own answer (a barge-in on its echo, or a turn made of it)."""
        return self.status not in ("completed", "no audio") or self.user_turns > 0


@dataclasses.dataclass
class BargedIn:
    room: Room
    reaction_ms: float | None   # None: the answer was never cleared
    status: str | None
    reason: str | None
    early: bool                 # also cleared (by the echo) after listen_s, before the user spoke
    ended_first: bool = False   # the answer had played to its end before the voice began: nothing to cut
    onset_t: float | None = None  # monotonic time of the voice's first voiced sample (for echo traces)


def _response(ev) -> dict:
    return ev.get("response") or {}


async def _ask(rt: RealtimeClient, rate: int, room: Room, question: Clip) -> tuple[EchoSpeaker, object]:
    await rt.update_session(events.session_config(input_rate=rate, output_rate=rate, instructions=LONG_REPLY))
    mic = rt.start_microphone(rate)
    speaker = attach_echo(rt, mic, room)
    mic.play(question.pcm)
    return speaker, mic


async def listen_through(url: str, rate: int, room: Room, question: Clip, timeout: float = 180) -> Listened:
    async with RealtimeClient(url, keep_audio=False) as rt:
        speaker, _ = await _ask(rt, rate, room, question)
        first = await rt.wait_for(("response.output_audio.delta", "response.done"), timeout=timeout)
        if first.type == "response.done":      # an answer without audio (the LLM said nothing)
            return Listened(room, "no audio", 0.0, 0, 0)
        rid = first.get("response_id")
        committed = len(rt.log.all("input_audio_buffer.committed"))
        done = await rt.wait_for("response.done", timeout=timeout,
                                 where=lambda e: _response(e).get("id") == rid)
        if _response(done).get("status") == "completed":
            await rt.wait_for("output_audio_buffer.stopped", timeout=timeout,
                              where=lambda e: e.get("response_id") == rid)
        await asyncio.sleep(1.0)           # the echo's tail: would it make a turn?
        pauses = len(rt.log.all("output_audio_buffer.cleared", since=first.index,
                                where=lambda e: e.get("response_id") == rid))
        turns = len(rt.log.all("input_audio_buffer.committed")) - committed
        return Listened(room, _response(done).get("status"), speaker.played_s, pauses, turns)


async def barge_in(url: str, rate: int, room: Room, question: Clip, voice: Clip,
                   listen_s: float = 2.0, timeout: float = 180) -> BargedIn:
    async with RealtimeClient(url, keep_audio=False) as rt:
        _, mic = await _ask(rt, rate, room, question)
        first = await rt.wait_for(("response.output_audio.delta", "response.done"), timeout=timeout)
        if first.type == "response.done":      # an answer without audio: nothing to interrupt
            return BargedIn(room, None, "no audio", None, False)
        rid = first.get("response_id")
        await asyncio.sleep(listen_s)      # the answer and its echo play a while
        mark = rt.mark()
        utt = mic.play(voice.pcm)

        def after_voice(e) -> bool:
            # A pause the echo caused before the user spoke is not the reaction to the user.
            return (e.get("response_id") == rid and utt.start_sample is not None
                    and e.t >= utt.time_of(voice.span.first_sample) - EARLIEST_S)
        try:
            cleared = await rt.wait_for("output_audio_buffer.cleared", since=mark, timeout=30, where=after_voice)
        except TimeoutError:
            return BargedIn(room, None, None, None, _early(rt, mark, rid), _ended_first(rt, rid, utt, voice))
        await rt.truncate(first.get("item_id"))
        done = await rt.wait_for("response.done", timeout=30, where=lambda e: _response(e).get("id") == rid)
        r = _response(done)
        onset = utt.time_of(voice.span.first_sample)
        return BargedIn(room, (cleared.t - onset) * 1000, r.get("status"),
                        (r.get("status_details") or {}).get("reason"), _early(rt, mark, rid, cleared.t),
                        onset_t=onset)


def _ended_first(rt: RealtimeClient, rid: str, utt, voice: Clip) -> bool:
    """The answer's playout stopped (played to its end) before the server heard
    the voice begin (its speech_started; the voice's first voiced sample if
    it never said so): a short answer, not a barge-in the server missed."""
    if utt.start_sample is None:
        return False
    onset = utt.time_of(voice.span.first_sample)
    heard = rt.log.all("input_audio_buffer.speech_started", where=lambda e: e.t >= onset - EARLIEST_S)
    cutoff = heard[0].t if heard else onset
    return any(e.t <= cutoff for e in rt.log.all(
        "output_audio_buffer.stopped", where=lambda e: e.get("response_id") == rid))


def _early(rt: RealtimeClient, mark: int, rid: str, before: float = float("inf")) -> bool:
    return any(e.t < before - EARLIEST_S for e in rt.log.all(
        "output_audio_buffer.cleared", since=mark, where=lambda e: e.get("response_id") == rid))
