"""Preemptive generation: the answer to a voice turn, started while the
turn's silence window is still open.

Once a voice turn's text is final inside its silence window, ``start``
begins a held response for it (its history is the history the turn will
have once committed; nothing reaches the client, response.py). At the end of
the turn ``release`` hands the held run over if it was built from exactly
what a response created then would be built from (same words, same plan,
planning.py); otherwise (history or settings changed, or it failed) it is
replaced by a fresh one. If the user goes on, ``discard`` drops it: nothing
reached the client, no turn outcome is counted. turns.py decides when to
start and discard (through the Conversation); the Conversation releases.

Owned by the Conversation."""
from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from services.gateway import metrics, protocol
from services.gateway.planning import Planner
from services.gateway.response import Response
from services.gateway.session import Item
from services.gateway.timings import TurnTimings
from services.gateway.turn_state import UserTurn

if TYPE_CHECKING:
    from services.gateway.conversation import Conversation

log = logging.getLogger(__name__)


def same_words(a: str, b: str) -> bool:
    """Equal once case and punctuation are set aside ("What's up?" == "what's up")."""
    return re.sub(r"[^\w']+", " ", a.lower()).split() == re.sub(r"[^\w']+", " ", b.lower()).split()


class Preemption:
    def __init__(self, conv: "Conversation", planner: Planner) -> None:
        self.conv, self.planner = conv, planner
        self.held: Response | None = None    # the held run for the turn in its silence window

    def start(self, turn: UserTurn) -> None:
        """The turn's text is final while its silence window is open: start its
        answer now, held. Only when the history cannot change before the turn
        ends (no response running or being interrupted), so the LLM sees what it
        would see without preemption."""
        conv = self.conv
        td = conv.state.config.turn_detection
        if (conv.closed or td is None or not td.preemptive_generation or not td.create_response
                or turn.manual or turn.ended):
            return
        if not turn.cut_done():
            return   # may still be a cough or backchannel, or the reply is being cut
        if conv.generating() or conv.interruptible_response() is not None:
            return
        text = turn.text()
        if not text:
            return
        if self.held is not None:
            if self.held.turn_id == turn.item_id and same_words(self.held.query, text):
                return   # started from an interim that the final confirms
            self.discard("replaced" if self.held.turn_id == turn.item_id else "discarded")
        pending = Item(id=turn.item_id, role="user", content=[{"type": "input_audio", "transcript": text}])
        timings = TurnTimings(preempt_start=conv.clock.now())
        resp = self.planner.new_response(protocol.ResponseOptions(), timings, pending=pending, held=True)
        resp.turn_id = turn.item_id
        resp.turn_span = turn.span   # its spans join the turn's trace; it ends it only if released
        self.held = resp
        resp.task = conv.spawn(resp.run(), f"preempt-{resp.id}")

    def discard(self, outcome: str) -> None:
        """Drop the held run: cancel its LLM/TTS calls; the client never hears of it."""
        resp, self.held = self.held, None
        if resp is None:
            return
        metrics.PREEMPTIVE_RUNS.labels(**metrics.base(), outcome=outcome).inc()
        resp.abandon()
        if not self.conv.closed:
            # Bounded wait for the cancelled calls, owned like every task here.
            self.conv.spawn(resp.stop_tasks(), f"preempt-stop-{resp.id}")

    def release(self, turn: UserTurn) -> Response | None:
        """The turn ended: the held run if it answers exactly this turn as a
        response created now would (it is then released to the client), else
        None (a run it had is discarded as replaced)."""
        resp = self.held
        if resp is None or resp.turn_id != turn.item_id:
            return None
        # A run started from an interim the final confirmed answered the interim's
        # wording: compare with the plan that wording gives.
        heard_as = {turn.item_id: resp.query}
        if (resp.failure is not None or not same_words(resp.query, turn.text())
                or resp.plan != self.planner.plan(protocol.ResponseOptions(), heard_as=heard_as)):
            log.info("session %s: preemptive response %s replaced (%s)", self.conv.state.id, resp.id,
                     "it failed" if resp.failure is not None else "its inputs changed")
            self.discard("replaced")
            return None
        self.held = None
        metrics.PREEMPTIVE_RUNS.labels(**metrics.base(), outcome="released").inc()
        resp.timings.adopt(turn.timings)
        return resp
