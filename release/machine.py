"""The release state machine, sans-IO: a transition table from (state, event)
to the next state, and ``apply`` that returns the new record. No Redis, no
clock of its own (``now`` is passed in); the controller does the IO.

    idle | promoted | rolled_back | aborted --start--> progressing (step 0)
    progressing | holding --pass--> progressing (next step), or promoted
                                    when the next step is the last
    progressing | holding --fail--> rolled_back (weight 0 at once)
    progressing | holding --inconclusive--> holding (the step is re-judged)
    holding --hold_expired--> aborted (weight 0: inconclusive too long)
    progressing | holding --promote--> promoted (operator: last weight now)
    progressing | holding | promoted --abort--> aborted (weight 0)

The last step is the final weight and is never judged (at 100 % there are no
stable turns to compare with): passing the step before it promotes."""
from __future__ import annotations

import dataclasses

from release.state import (
    ABORTED, HOLDING, IDLE, PROGRESSING, PROMOTED, ROLLED_BACK, Release,
)

START, PASS, FAIL, INCONCLUSIVE, HOLD_EXPIRED, PROMOTE, ABORT = (
    "start", "pass", "fail", "inconclusive", "hold_expired", "promote", "abort")
_JUDGED = (PROGRESSING, HOLDING)

# (state, event) -> next state; ``apply`` refines "progressing" into "promoted" at the last step.
TABLE: dict[tuple[str, str], str] = {
    **{(s, START): PROGRESSING for s in (IDLE, PROMOTED, ROLLED_BACK, ABORTED)},
    **{(s, PASS): PROGRESSING for s in _JUDGED},
    **{(s, FAIL): ROLLED_BACK for s in _JUDGED},
    **{(s, INCONCLUSIVE): HOLDING for s in _JUDGED},
    (HOLDING, HOLD_EXPIRED): ABORTED,
    **{(s, PROMOTE): PROMOTED for s in _JUDGED},
    **{(s, ABORT): ABORTED for s in (*_JUDGED, PROMOTED)},
}
# Events that are a judge's verdict, counted in Release.decisions.
_VERDICT_OF = {PASS: "pass", FAIL: "fail", INCONCLUSIVE: "inconclusive", HOLD_EXPIRED: "inconclusive"}


class IllegalTransition(ValueError):
    """The event makes no sense in the release's state (e.g. start while progressing)."""


def validate_steps(steps: list[float]) -> list[float]:
    """Weights strictly increasing in (0, 100], at least two (one judged, one final)."""
    steps = [float(s) for s in steps]
    if len(steps) < 2:
        raise ValueError("a release needs at least two steps: one judged, one final (e.g. 5,100)")
    if any(not 0 < s <= 100 for s in steps) or any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"steps must increase strictly within (0, 100]: {steps}")
    return steps


def apply(rel: Release, event: str, now: float, *, steps: list[float] | None = None,
          interval_s: float | None = None, hold_limit_s: float | None = None) -> Release:
    """The record after ``event`` at ``now``. ``steps``/``interval_s``/
    ``hold_limit_s`` configure a ``start``. Raises IllegalTransition."""
    nxt = TABLE.get((rel.state, event))
    if nxt is None:
        raise IllegalTransition(f"{rel.service}: cannot {event} a release that is {rel.state}")
    new = dataclasses.replace(rel, decisions=dict(rel.decisions), steps=list(rel.steps), updated_at=now)
    verdict = _VERDICT_OF.get(event)
    if verdict is not None:
        new.decisions[verdict] = new.decisions.get(verdict, 0) + 1
    if event == START:
        new.steps = validate_steps(steps if steps is not None else rel.steps)
        new.interval_s = interval_s if interval_s is not None else rel.interval_s
        new.hold_limit_s = hold_limit_s if hold_limit_s is not None else rel.hold_limit_s
        _enter_step(new, 0, now)
    elif event == PASS:
        _enter_step(new, rel.step + 1, now)
    elif event == INCONCLUSIVE:
        new.state = HOLDING
        new.hold_since = rel.hold_since if rel.hold_since is not None else now
        new.next_check_at = now + new.interval_s
    elif event == PROMOTE:
        _enter_step(new, len(new.steps) - 1, now)
    else:  # fail, hold_expired, abort: the canary takes no more sessions
        new.state, new.weight, new.hold_since, new.next_check_at = nxt, 0.0, None, 0.0
    return new


def _enter_step(rel: Release, step: int, now: float) -> None:
    rel.step, rel.weight = step, rel.steps[step]
    rel.state = PROMOTED if step == len(rel.steps) - 1 else PROGRESSING
    rel.step_started_at, rel.hold_since = now, None
    rel.next_check_at = 0.0 if rel.state == PROMOTED else now + rel.interval_s
