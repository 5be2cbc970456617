"""What a preemptive run would have told the client, kept until its turn is
confirmed.

Preemptive runs (``held=True``): the conversation may start a response for a
user turn that is not confirmed yet (its silence window is still open,
preempt.py). Such a run generates and synthesises, but nothing reaches the
client: its events are kept here in order, audio is not sent, its item is
not in the conversation. Response.release() (the turn was confirmed) then
emits exactly what a response started at that moment would have:
response.created, the output item, the kept events, and the audio, which is
usually ready by then. Response.abandon() (the user went on) drops it all;
the caller then cancels the tasks. Whether the run is held is the
response's state (response_life.py), read through ``held``."""
from __future__ import annotations

import asyncio
from typing import Callable


class HeldOutput:
    def __init__(self, held: Callable[[], bool]) -> None:
        self._held = held
        self._actions: list[Callable[[], None]] = []
        self.released = asyncio.Event()      # set when the client may see the run
        if not held():
            self.released.set()

    def do(self, act: Callable[[], None]) -> None:
        """Tell the client now, or at release if held."""
        if self._held():
            self._actions.append(act)
        else:
            act()

    def take(self) -> list[Callable[[], None]]:
        """The run was released: what was kept, in order, for the caller to replay."""
        actions, self._actions = self._actions, []
        return actions

    def drop(self) -> None:
        self._actions.clear()
