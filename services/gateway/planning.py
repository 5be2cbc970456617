"""What an answer is built from, and warming the LLM before it is asked.

- ``history``: the messages the LLM sees (instructions, then the windowed
  items, history.py), with a user item not committed yet (``pending``) or
  another wording of an item's text (``heard_as``) for preemptive runs.
- ``plan``: everything a response is built from; equal plans give identical
  responses (a held preemptive run is released only if its plan is still
  the one a response created now would have, preempt.py), up to which
  sentences of the passages are quoted: chosen by the turn's prefill's
  words when they began the question (``passage_query``), a cache matter.
- ``new_response``: a Response built from a plan (the Conversation starts it).
- Prefill: while the user speaks, an LLM instance is warmed with the history
  and the words heard so far; after an answer, with the prompt the next turn
  will start with. An optimisation only, one request at a time.

Owned by the Conversation; reads its state at each call (a resumed session
replaces it)."""
from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any

from services.gateway import confirm, metrics, protocol
from services.gateway import tools as tool_rules
from services.gateway.backends.types import BackendError, ChatMessage, Passage, Tools, conversation_key
from services.gateway.history import window_start
from services.gateway.protocol import new_id
from services.gateway.response import Response
from services.gateway.session import Item
from services.gateway.timings import TurnTimings
from services.gateway.turn_state import UserTurn

if TYPE_CHECKING:
    from services.gateway.conversation import Conversation

log = logging.getLogger(__name__)


def _keys(passages: list[Passage]) -> tuple:
    """Passages as the prompt quotes them: the same passages found for other
    words come back with other scores, which the prompt does not show."""
    return tuple((p.source, p.title, p.text) for p in passages)


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def hand_turn_span(turn: UserTurn, resp: Response) -> None:
    """The response answering a turn ends the turn's trace when it ends."""
    resp.turn_span, resp.owns_turn_span = turn.span, True
    turn.span_handed_over = True


class Planner:
    def __init__(self, conv: "Conversation") -> None:
        self.conv = conv
        self._prefill_task: asyncio.Task | None = None
        self._prefilled = ""                      # the user text last sent for prefill
        # The turn (item id), words and passages of the latest prefill started with passages.
        self._quoted: tuple[str, str, tuple, list[Passage]] | None = None
        self._active: asyncio.Task | None = None     # the turn prefill the LLM is evaluating
        self._active_passages: tuple = ()            # its passages (keys)
        self._warm_task: asyncio.Task | None = None

    def history(self, instructions: str, pending: Item | None = None,
                heard_as: dict[str, str] | None = None) -> list[ChatMessage]:
        """What the LLM sees; ``pending`` is a user item not committed yet and
        ``heard_as`` another wording of an item's text (preemption)."""
        msgs = [ChatMessage("system", instructions)] if instructions else []
        items = self.conv.state.items + ([pending] if pending is not None else [])
        calls = tool_rules.messages(items)    # function calls and their outputs (tools.py)
        for it in items[window_start(len(items), self.conv.settings.history_items):]:
            if it.id in calls:
                msgs.append(calls[it.id])
                continue
            text = (heard_as or {}).get(it.id) or it.text()
            if text:
                msgs.append(ChatMessage(it.role, text))
        return msgs

    def plan(self, opts: protocol.ResponseOptions, pending: Item | None = None,
             heard_as: dict[str, str] | None = None) -> tuple:
        """Everything a response is built from: equal plans give identical responses."""
        cfg, settings = self.conv.state.config, self.conv.settings
        instructions = (opts.instructions if opts.instructions is not None
                        else (cfg.instructions or settings.instructions))
        items = self.conv.state.items + ([pending] if pending is not None else [])
        texts = [(heard_as or {}).get(it.id) or it.text() for it in items if it.role == "user"]
        query = next((t for t in reversed(texts) if t), "")
        mot = opts.max_output_tokens if opts.max_output_tokens is not None else cfg.max_output_tokens
        max_tokens = mot if isinstance(mot, int) else settings.llm_max_tokens
        tools = tool_rules.offered(opts.tools if opts.tools is not None else cfg.tools,
                                   opts.tool_choice if opts.tool_choice is not None else cfg.tool_choice)
        return (tuple(self.history(instructions, pending, heard_as)), query,
                tuple(opts.modalities or cfg.output_modalities), tuple(sorted(opts.metadata.items())),
                opts.in_conversation, max_tokens, cfg.output_rate, cfg.voice, cfg.speed,
                cfg.retrieval_enabled, cfg.retrieval_k, tools)

    def new_response(self, opts: protocol.ResponseOptions, timings: TurnTimings | None,
                     pending: Item | None = None, held: bool = False) -> Response:
        conv = self.conv
        plan = self.plan(opts, pending)
        messages, query, modalities, metadata, in_conversation, max_tokens = plan[:6]
        resp = Response(conv, messages=list(messages), query=query, modalities=list(modalities),
                        timings=timings, metadata=dict(metadata), in_conversation=in_conversation,
                        max_tokens=max_tokens, held=held, tools=plan[-1])
        resp.plan = plan
        # Only an answer to the user's latest words may be declined (grounding.py):
        # not a response told what to do (instructions), nor one after an empty turn.
        resp.may_decline = (opts.instructions is None and bool(messages) and messages[-1].role == "user"
                            and messages[-1].content == query)
        resp.answers_item = pending.id if pending is not None else next(
            (it.id for it in reversed(conv.state.items) if it.role == "user"), "")
        if plan[-1] is not None:   # tools offered: a sensitive one waits for a yes (confirm.py)
            resp.sensitive = tool_rules.sensitive(opts.tools if opts.tools is not None else conv.state.config.tools)
        resp.on_completed.append(confirm.settle)
        if in_conversation and conv.settings.llm_prefill and conv.settings.llm_warm_after_answer:
            # A callback, not a task waiting for the answer: a cancelled, failed or
            # never-run (held, then dropped) response would leave such a task
            # waiting until the session closes, one per barge-in.
            resp.on_completed.append(self._warm_after)
        return resp

    # -- prefill ------------------------------------------------------------------------
    def prefill(self, turn: UserTurn) -> None:
        """While the user speaks, warm an LLM instance with the history and the
        words heard so far (the last one may still change), so the answer's
        prompt is mostly evaluated before the turn ends. Only when the answer
        would see exactly this history (no reply running or being cut: a turn
        that talked over a reply warms once its cut is done, with the reply as
        it was cut), one request at a time; the LLM answers at once when no
        instance is free. With retrieval, a newer interim whose words find
        other passages than the running prefill quotes replaces it (the
        latest words are the likeliest to retrieve what the whole question
        will; the LLM stops the replaced one at its next piece)."""
        conv = self.conv
        td = conv.state.config.turn_detection
        if (conv.closed or not conv.settings.llm_prefill or td is None or not td.create_response
                or turn.manual or turn.ended or not turn.cut_done() or conv.response is not None
                and conv.response.phase != "done"):
            return
        running = self._prefill_task if self._prefill_task is not None and not self._prefill_task.done() else None
        # A warm-up, or this turn's search still running, goes on; without
        # retrieval a running prefill is never replaced (same words, shorter).
        if running is not None and (running is self._warm_task or running is not self._active
                                    or not self._retrieves()):
            return
        heard = turn.text()
        words = heard.split()[:-1]
        text = " ".join(words)
        if len(words) < conv.settings.llm_prefill_min_words or text == self._prefilled:
            return
        self._prefilled = text
        pending = Item(id=turn.item_id, role="user", content=[{"type": "input_audio", "transcript": text}])
        plan = self.plan(protocol.ResponseOptions(), pending)
        # Retrieval gets every word heard (the first words of a short question
        # scored under the floor, or found other passages than the whole
        # question: docs/benchmarks.md); the quoted turn ends before the last.
        self._prefill_task = conv.spawn(self._prefill(list(plan[0]), turn.item_id, heard, plan[-1], turn=turn),
                                        "llm-prefill")

    def _retrieves(self) -> bool:
        cfg, settings = self.conv.state.config, self.conv.settings
        return bool(cfg.retrieval_enabled and settings.retrieval and settings.prefill_retrieval)

    async def _passages_for(self, query: str) -> list[Passage]:
        """What the answer's retrieval would find for these words, when the
        session retrieves: the prefill quotes them as the answer will, so a
        question about the documents has its passages (most of its prompt) in
        the cache before the turn ends. A failed search only costs the warm-up."""
        cfg, settings = self.conv.state.config, self.conv.settings
        if not (self._retrieves() and query.strip()):
            return []
        try:
            hits = await self.conv.backends.rag.search(query, cfg.retrieval_k, settings.rag_min_score)
        except BackendError as exc:
            log.debug("session %s: retrieval for the prefill failed: %s", self.conv.state.id, exc.message)
            return []
        return [p for p in hits if p.score >= settings.rag_min_score]

    async def _prefill(self, messages: list[ChatMessage], item_id: str, query: str = "",
                       tools: Tools | None = None, request_id: str = "", turn: UserTurn | None = None) -> None:
        """A turn's prefill (``item_id``, ``turn``: the turn being spoken) or,
        without one, the warm-up after an answer."""
        me = asyncio.current_task()
        before = self._quoted
        try:
            passages = await self._passages_for(query)
            keys = _keys(passages)
            active = self._active
            if active is not None and not active.done():
                if turn is not None and (turn.ended or self.conv.response is not None):
                    # The turn ended during the search: its answer has chosen
                    # (or is choosing) what to quote, maybe the running
                    # prefill's; a replacement now could only take that away.
                    if self._prefill_task is me:
                        self._prefill_task = active
                    return
                if keys == self._active_passages:
                    # The running prefill already quotes these: it goes on, and
                    # stays the one a newer interim compares with.
                    if self._prefill_task is me:
                        self._prefill_task = active
                    return
                active.cancel()     # other passages: the newer words replace it
                metrics.LLM_PREFILLS.labels(**metrics.base(), outcome="replaced").inc()
            if item_id:             # a turn's prefill (not a warm-up)
                self._active, self._active_passages = me, keys
            # The tools too: the LLM describes them in the system prompt the answer's prompt starts with.
            kw: dict[str, Any] = {"tools": tools} if tools is not None else {}
            if passages:
                kw["passage_query"] = query    # the answer chooses its sentences by it too
                # From the start: an answer requested while this prefill still
                # runs must quote as it does, or it cannot wait for its cache.
                self._quoted = (item_id, query, keys, passages)
            outcome = await self.conv.backends.llm.prefill(messages, f"prefill-{request_id or item_id}",
                                                           passages, conversation=conversation_key(self.conv.state.id),
                                                           **kw)
        except BackendError as exc:
            outcome = "error"   # an optimisation only: the answer's own request reports a down LLM
            log.debug("session %s: prefill failed: %s", self.conv.state.id, exc.message)
        finally:
            if self._active is me:
                self._active = None
        if outcome != "prefill" and self._quoted is not None and self._quoted[1] == query:
            self._quoted = before   # nothing was evaluated with these words: quote as before
        metrics.LLM_PREFILLS.labels(**metrics.base(), outcome=outcome or "unknown").inc()

    def quote(self, item_id: str, query: str, passages: list[Passage]) -> tuple[list[Passage], str]:
        """What an answer quotes: (passages, the words their sentences are
        chosen by, "" = the question's own). Its prefill's, when that prefill
        was for this turn (``item_id``), its words but the last (which may
        still have changed) begin the question, and the final agrees with what
        it found: the same passages, or the answer's best one among them and
        at least two shared. Then both prompts are the same up to the question
        and the answer reuses the prefill's evaluation (chosen otherwise, the
        prompts part at the first passage: docs/benchmarks.md; a passage more
        or less from the same question's words is the usual difference:
        docs/capacity-rechecks.md, re-check 28)."""
        if self._quoted is None or not passages:
            return passages, ""
        turn, heard, quoted, kept = self._quoted
        sure = _words(heard)[:-1]
        if turn != item_id:
            return passages, ""
        keys = _keys(passages)
        shared = len(set(quoted) & set(keys))
        if sure and _words(query)[:len(sure)] == sure:
            if quoted == keys:
                return passages, heard
            if keys[0] in quoted and shared >= min(2, len(keys)):
                log.info("session %s: the answer keeps the passages its prefill quoted (%d of %d shared)",
                         self.conv.state.id, shared, len(keys))
                return list(kept), heard
            why = "passages"
        else:
            why = "sentences: the words changed"
        # No words of the question at INFO (docs/security.md).
        log.info("session %s: the answer quotes other than its prefill did (%s; %d of %d passages shared)",
                 self.conv.state.id, why, shared, len(keys))
        return passages, ""

    def _warm_after(self, resp: Response) -> None:
        """When an answer is generated, warm the LLM with the prompt the next turn
        will start with: the history as it will be windowed then (one item more:
        a window move, see history.py, is paid here in the background, not by the
        next answer's first token), ending with this answer. The next answer
        then evaluates only its own words. One request at a time."""
        if self.conv.closed or (self._prefill_task is not None and not self._prefill_task.done()):
            return
        nxt = Item(id=new_id("item"), role="user", content=[{"type": "input_text", "text": ""}])
        plan = self.plan(protocol.ResponseOptions(), nxt)
        messages = plan[0]
        if messages and messages[-1].role == "assistant":
            self._prefilled = ""
            self._prefill_task = self._warm_task = self.conv.spawn(
                self._prefill(list(messages), "", tools=plan[-1], request_id=f"warm-{resp.id}"), "llm-warm")
