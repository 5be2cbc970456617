"""Supervision of a session's critical tasks: the input audio pump and the
VAD and ASR stream keepers. Without them the session is open but deaf, so an
unexpected exception in one (a bug; backend failures are BackendError and
handled where they happen) must never pass silently.

Policy: the failure is logged with its traceback, counted in
``voice_gateway_task_failures_total{task, action}`` and told to the client in
an ``error`` event naming the task. The task is then run again (its state
lives in the session, so a fresh run picks up the next audio chunk or opens a
fresh stream), at most ``MAX_RESTARTS`` times per task within
``RESTART_WINDOW_S``; a task that fails more often than that is broken, not
unlucky, and the session closes cleanly instead (error event, then the
socket closes with 1011), its state already in the store so the client can
resume it with ``session_id``.

A session's one-shot tasks (the end of a turn, its commit, a barge-in's
cut, a false interruption's resume, an LLM warm-up, a client's cancel) are
not restarted: there is nothing to run again. Their unexpected failure is
logged, counted (action ``dropped``) and told to the client the same way;
one of a turn's own tasks (``TURN_TASKS``) also drops its turn if that is
still in progress, so the session listens afresh instead of waiting for a
turn that cannot end.

Cancellation (barge-in, session close) is not a failure and passes through."""
from __future__ import annotations

import collections
import logging
from typing import Any, Awaitable, Callable

from services.gateway import events, metrics

log = logging.getLogger(__name__)

# Three crashes in a minute is a loop, not a one-off: a restart would only
# repeat it, and a closed session the client can resume beats a deaf one.
MAX_RESTARTS = 3
RESTART_WINDOW_S = 60.0
ERROR_CODE = "session_task_failed"
# WebSocket close code (RFC 6455): the server hit an unexpected condition.
CLOSE_INTERNAL_ERROR = 1011

# What the client is told failed (task name -> words).
CRITICAL_TASKS = {
    "audio-pump": "input audio processing",
    "vad-stream": "voice activity detection stream",
    "asr-stream": "speech recognition stream",
}
# One-shot tasks of a user turn: their failure leaves the turn unable to end.
TURN_TASKS = {
    "endpoint": "end-of-turn wait",
    "commit": "end of the user's turn",
    "vad-lost-stop": "end of the user's turn",
    "interrupt": "interruption of the reply",
    "false-interruption": "resume after a false interruption",
}
OTHER_TASKS = {
    "llm-prefill": "LLM warm-up",
    "llm-warm": "LLM warm-up",
    "client-cancel": "cancel",
    "client-clear": "output audio clear",
}


class RestartBudget:
    """Per task, the restarts allowed within a sliding window of clock time."""

    def __init__(self, max_restarts: int = MAX_RESTARTS, window_s: float = RESTART_WINDOW_S) -> None:
        self.max_restarts, self.window_s = max_restarts, window_s
        self._times: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    def allow(self, task: str, now: float) -> bool:
        """Record a failure at ``now``; True if the task may run again."""
        times = self._times[task]
        while times and now - times[0] >= self.window_s:
            times.popleft()
        if len(times) >= self.max_restarts:
            return False
        times.append(now)
        return True


class Supervisor:
    """One per session (``conv``: its Conversation, for the session id, the
    clock, ``emit`` and the outbox). A close ends the outbox; the writer then
    closes the socket with ``close_code``."""

    def __init__(self, conv: Any, budget: RestartBudget | None = None) -> None:
        self.conv = conv
        self.budget = budget or RestartBudget()
        self.close_code: int | None = None   # set once the session is closed by a failure

    async def run(self, task: str, factory: Callable[[], Awaitable[None]]) -> None:
        """Run ``factory()`` under supervision until it returns, is cancelled,
        or fails beyond the restart budget."""
        while True:
            try:
                await factory()
                return
            except Exception as exc:  # noqa: BLE001 - CancelledError is a BaseException and passes
                if not self._failed(task, exc):
                    return

    def one_shot_failed(self, name: str, exc: BaseException, turn: Any = None,
                        event_id: str | None = None) -> None:
        """A one-shot task (``name`` as spawned; a response's own tasks carry
        its id: ``preempt-stop-resp_…``) ended with an unexpected exception.
        ``turn``: the user turn it served, dropped if it is still the one in
        progress (a newer turn is left alone); ``event_id``: the client event
        it served, named in the error."""
        kind = name.split("-resp_")[0]
        log.error("session %s: task %s failed", self.conv.state.id, name, exc_info=exc)
        metrics.TASK_FAILURES.labels(**metrics.base(), task=kind, action="dropped").inc()
        what = TURN_TASKS.get(kind) or OTHER_TASKS.get(kind) or kind
        drop = turn is not None and self.conv.turns.turn is turn
        lost = "; the turn in progress was dropped, please repeat it" if drop else ""
        self.conv.emit(events.error(ERROR_CODE, f"internal error in the session's {what} (task {kind}: "
                                    f"{type(exc).__name__}){lost}; the session goes on", type="server_error",
                                    event_id=event_id))
        if drop:
            self.conv.turns.drop_turn()

    def _failed(self, task: str, exc: Exception) -> bool:
        """Report a failure; True if the task runs again."""
        sid = self.conv.state.id
        restart = self.close_code is None and self.budget.allow(task, self.conv.clock.now())
        action = "restart" if restart else "close"
        log.error("session %s: task %s failed (%s)", sid, task, action, exc_info=exc)
        metrics.TASK_FAILURES.labels(**metrics.base(), task=task, action=action).inc()
        what = CRITICAL_TASKS.get(task, task)
        if restart:
            message = (f"internal error in the session's {what} (task {task}: {type(exc).__name__}); "
                       "it was restarted: speech in progress may have been lost, please repeat it")
        else:
            message = (f"internal error in the session's {what} (task {task}: {type(exc).__name__}), "
                       f"more than {self.budget.max_restarts} times in {self.budget.window_s:g} s: the "
                       f"session is closing; reconnect with session_id={sid} to resume it")
        self.conv.emit(events.error(ERROR_CODE, message, type="server_error"))
        if not restart and self.close_code is None:
            self.close_code = CLOSE_INTERNAL_ERROR
            self.conv.outbox.close()
        return restart
