"""Barge-in: user speech while a response is thinking or speaking. The one
place where a barge-in starts, is confirmed, or is given up.

- Start (``begin``): speech that starts over an interruptible response pauses
  it at once (output_audio_buffer.cleared); the turn's barge-in is pending
  (its states: turn_life.py).
- Confirm (``confirm``, ``confirm_at_turn_end``): once the speech reached
  min_interrupt_ms AND the transcript holds a real word (not a backchannel,
  not a cough's empty text), the response is cancelled
  (Conversation.interrupt). Checked on each audio chunk and interim while
  the speech lasts, and once more when the turn ends (Conversation.end_turn:
  a turn that still fails it is dropped).
- Flush (``confirm_flush``): speech that lasted min_interrupt_ms plus
  CONFIRM_FLUSH_AFTER_MS without a real word yet (the interims lag: a busy
  host) asks the ASR for a flush, so its words come at final priority.
- Echo: a transcript that is mostly the words the assistant spoke in the
  last seconds (its own voice back through the user's speakers, what the
  echo canceller left) confirms nothing (echo_words.py).
- Give up (``resume_later``): speech that ends unconfirmed resumes the
  paused reply after false_interruption_timeout_ms (a false interruption).
- Echo onset (``echo_onset``, GATEWAY_ECHO_ONSET_PAUSE, on): a voice over a loud
  echo, seen by its energy in the canceller's output before the VAD can
  hear it, pauses the reply at once; a speech start takes the pause over,
  and without one it resumes after ECHO_ONSET_RESUME_S.
Times are read from the injected clock."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from services.gateway import backchannel, echo_words, metrics
from services.gateway.turn_state import UserTurn

if TYPE_CHECKING:
    from services.gateway.turns import TurnTaker

CONFIRM_FLUSH_EVERY_S = 0.4   # an unconfirmed barge-in's flushes: at most one per interim interval
# The first flush waits one interim interval past min_interrupt_ms: on a host
# keeping up, an interim confirms first and no flush is spent; a flush over
# only 0.3 s of speech was mostly too little audio to decode reliably, and the
# ASR redid it on the full 30 s window (~1 s of CPU on the final queue, ahead
# of other people's finals: 4 users' voice-to-voice p50 rose from ~0.7 to
# 1.15 s, make load USERS=4, 2026-12-01).
CONFIRM_FLUSH_AFTER_MS = 400
# A reply paused on the echo canceller's energy onset (echo_onset) resumes
# unless the VAD starts a turn within this: its start came 146-708 ms after
# the voice's onset on the stack's traces, and pausing ends the double talk
# that held it back.
ECHO_ONSET_RESUME_S = 1.0


def is_real_turn(turn: UserTurn, td: Any, now_ms: float) -> bool:
    """Long enough (min_interrupt_ms) and a real word: an interruption, not a
    cough or an "mm-hm" over the reply."""
    min_ms = td.min_interrupt_ms if td else 0
    return turn.speech_ms(now_ms) >= min_ms and backchannel.is_real(turn.text())


class BargeIn:
    """Owned by the TurnTaker; holds the false-interruption timer."""

    def __init__(self, turns: "TurnTaker") -> None:
        self.turns = turns
        self.conv = turns.conv
        self._resume_task: asyncio.Task | None = None
        self._paused: Any = None     # the reply a barge-in paused last
        self._onset_pause: tuple[Any, float] | None = None   # (reply, clock time) paused by echo_onset

    def begin(self, turn: UserTurn) -> None:
        """A new turn's speech started: pause the reply it talks over, if any."""
        conv = self.conv
        resp = conv.interruptible_response()
        if resp is None:
            return
        onset, self._onset_pause = self._onset_pause, None
        if self.turns.td.interrupt_response:
            turn.life.talk_over()
            if onset is not None and onset[0] is resp and resp.paused:
                # Paused already by the echo onset (echo_onset): its reaction, from this speech's onset.
                metrics.BARGE_IN_REACTION.labels(**metrics.base()).observe(max(0.0, onset[1] - turn.onset_wall))
            conv.pause_response(resp, turn.onset_wall)
            self._paused = resp
        elif resp is self._paused and resp.paused:
            # Still paused by an earlier turn's barge-in, whose false-interruption
            # timer this speech's start cancelled, and interruptions are off now:
            # this turn does not take the pause over, so nothing else would ever
            # resume the reply (in progress for ever, every response.create
            # refused). Found by the protocol state machine (tests/fuzz).
            conv.resume_response(dropped_by="interruptions turned off")

    def echo_onset(self, onset_wall: float) -> None:
        """The echo canceller's output jumped over a loud echo (echo_onset.py):
        most likely a voice that AEC3 holds back from the VAD for up to ~0.5 s.
        Pause the reply now, as the VAD's speech start would later; that start
        takes the pause over as a turn (``begin``). If no speech starts within
        ECHO_ONSET_RESUME_S, the reply resumes (a false interruption)."""
        turns, conv = self.turns, self.conv
        if turns.td is None or not turns.td.interrupt_response:
            return
        if turns.segment is not None or (turns.turn is not None and not turns.turn.ended):
            return     # speech is already known: the turn decides
        resp = conv.interruptible_response()
        if resp is None or resp.paused or not resp.pause():
            return
        # The reaction (speech onset -> cleared) is observed when a speech start
        # takes this pause over (``begin``), not for an onset no speech follows.
        self._onset_pause = (resp, conv.clock.now())
        self._paused = resp
        self.cancel_resume()
        self._resume_task = conv.spawn(self._resume_after_onset(resp), "echo-onset-resume")

    async def _resume_after_onset(self, resp: Any) -> None:
        """No speech started (a speech start cancels this): resume the reply.
        Also when the client turned turn detection or interruptions off
        meanwhile, which then is no false interruption."""
        await self.conv.clock.sleep(ECHO_ONSET_RESUME_S)
        self._onset_pause = None
        if self.conv.response is resp:
            td = self.turns.td
            self.conv.resume_response(dropped_by=None if td is not None and td.interrupt_response else
                                      "turn detection or interruptions turned off")

    def confirm(self, turn: UserTurn) -> bool:
        """While the speech lasts (each audio chunk and transcript): confirm
        the barge-in if the turn is a real one; the reply is cancelled."""
        return self._confirm(turn, self.turns.td, during_speech=True)

    def confirm_at_turn_end(self, turn: UserTurn, td: Any) -> bool:
        """The last check, by the ended turn with its final transcript, against
        ``td``, the turn detection as the turn ended. The confirmation-time
        metric, the false-interruption timer and the transcript delta belong
        to speech still going on: they are left alone."""
        return self._confirm(turn, td, during_speech=False)

    def _confirm(self, turn: UserTurn, td: Any, during_speech: bool) -> bool:
        if turn.confirmed:
            return True
        if not is_real_turn(turn, td, self.conv.ring.end_ms) or self.is_echo(turn):
            return False
        turn.life.confirm()
        if during_speech:
            metrics.BARGE_IN_CONFIRM.labels(**metrics.base()).observe(
                max(0.0, self.conv.clock.now() - turn.onset_wall))
            self.cancel_resume()
        task = turn.interrupt_task = self.conv.spawn(self._cut(turn), "interrupt", turn=turn)
        # A task cancelled before it ran (the session closing) never runs _cut's finally.
        task.add_done_callback(lambda _t: turn.life.cut_finished())
        if during_speech:
            self.turns.send_delta(turn)
        return True

    async def _cut(self, turn: UserTurn) -> None:
        """Cancel the reply the turn talked over. The cut is done as this
        returns, in the step that ends the task (not a loop turn later, as a
        done callback would say it)."""
        try:
            await self.conv.interrupt(turn)
        finally:
            turn.life.cut_finished()

    def why_not(self, turn: UserTurn, td: Any) -> str:
        """Why an unconfirmed turn over the reply confirms nothing (for the log)."""
        min_ms = td.min_interrupt_ms if td else 0
        if turn.speech_ms(self.conv.ring.end_ms) < min_ms:
            return f"shorter than {min_ms} ms"
        if not backchannel.is_real(turn.text()):
            return "no real word"
        return "the reply's own words (echo)" if self.is_echo(turn) else "unconfirmed"

    def is_echo(self, turn: UserTurn) -> bool:
        """The turn's words are the reply's own, heard back through the speakers."""
        resp = self.conv.response
        if resp is None or not resp.audio_out or not resp.started or not self.may_hear_echo():
            return False
        # The reply around the turn's speech, not around now: a turn ended (or
        # confirmed late) after the reply resumed is compared with what it talked over.
        at = resp.playout.position_at(turn.onset_wall)
        at = resp.playout.heard_ms() if at is None else at
        recent = echo_words.spoken_words(resp.item.clauses, at, at + turn.speech_ms(self.conv.ring.end_ms))
        if not echo_words.is_echo(turn.text(), recent):
            return False
        if turn.echo_text != turn.text():
            turn.echo_text = turn.text()
            metrics.ECHO_TRANSCRIPTS.labels(**metrics.base()).inc()
        return True

    def may_hear_echo(self) -> bool:
        """Whether this microphone may carry the reply back at all. Not when the
        client said it is near-field (a headset), nor once the echo detector
        found that it does not (echo_detect.py: quiet while the reply played,
        or no correlation with it): the user's words are then theirs even where
        they are the reply's own, as when a small model says the question back
        and the user, talking over it, says the question again (a load test's
        failed turns, 2026-12-02: the reply resumed and the question was lost)."""
        if self.conv.state.config.noise_reduction == "near_field":
            return False
        echo = self.conv.echo
        return echo is None or echo.canceller.detector.state != "none"

    async def confirm_flush(self, turn: UserTurn) -> None:
        """Speech over the reply has lasted min_interrupt_ms (+ CONFIRM_FLUSH_AFTER_MS)
        and no real word is known yet: ask the ASR for a flush, a pass over the utterance so far at
        final priority. Interims are background work (on a busy host they wait
        behind every stream's urgent work), so waiting for one could confirm the
        interruption only after the reply is done; the flush's words confirm it
        at once. Repeated at the interim cadence while the speech lasts
        unconfirmed; the pause flush's adoption is unaffected (the ASR adopts its
        latest flush, which covers at least the audio of the pause's)."""
        turns = self.turns
        seg, td = turns.segment, turns.td
        if seg is None or seg.done.is_set() or turns.asr.stream is None or td is None:
            return
        if turn.speech_ms(self.conv.ring.end_ms) < td.min_interrupt_ms + CONFIRM_FLUSH_AFTER_MS:
            return
        now = self.conv.clock.now()
        if turn.confirm_flush_at is not None and now - turn.confirm_flush_at < CONFIRM_FLUSH_EVERY_S:
            return
        turn.confirm_flush_at = now
        await turns.asr_send_upto()
        await turns.asr.send("flush")

    def resume_later(self, turn: UserTurn) -> None:
        """The speech ended unconfirmed: start the false-interruption timer
        (one at a time: a newer one replaces an older, which nothing could
        cancel any more)."""
        self.cancel_resume()
        self._resume_task = self.conv.spawn(self._resume_later(turn), "false-interruption", turn=turn)

    def cancel_resume(self) -> None:
        task = self._resume_task
        if task is not None and not task.done():
            task.cancel()

    async def _resume_later(self, turn: UserTurn) -> None:
        td = self.turns.td
        await self.conv.clock.sleep((td.false_interruption_timeout_ms if td else 0) / 1000.0)
        if turn.confirmed or self.turns.segment is not None:
            return
        await turn.wait_finals(self.conv.settings.final_timeout_s, self.conv.clock)
        if turn.confirmed or self.turns.segment is not None or self.confirm(turn):
            return
        self.conv.resume_response()
