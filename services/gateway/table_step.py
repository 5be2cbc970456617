"""One step of a transition table, the move the sans-IO state machines share
(response_life.py, turn_life.py): look (state, event) up in the table; an
event the table lacks is ignored when listed as a late event that changes
nothing, and otherwise raises the machine's own IllegalTransition (a bug in
the caller, caught at once rather than carried on in a wrong state)."""
from __future__ import annotations

import enum
from typing import AbstractSet, Mapping, TypeVar

State = TypeVar("State", bound=enum.Enum)
Event = TypeVar("Event", bound=enum.Enum)


def step(transitions: Mapping[tuple[State, Event], State], ignored: AbstractSet[tuple[State, Event]],
         state: State, event: Event, illegal: type[Exception], what: str) -> State | None:
    """The state ``event`` moves ``state`` to, or None when the event is ignored.
    ``what`` names the machine in the error: "<what> <state>: <event> is not allowed"."""
    after = transitions.get((state, event))
    if after is None and (state, event) not in ignored:
        raise illegal(f"{what} {state.value}: {event.value} is not allowed")
    return after
