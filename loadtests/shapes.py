"""Load shapes: steady is Locust's own (-u/-r/-t); the step shape adds
``step_users`` users every ``step_s`` seconds up to ``max_users``, holds the
last step for ``step_s`` too, then stops the run.

Why a step shape: the capacity of a host is the user count at which the SLO
breaks, and one run that climbs in steps shows it in Locust's own charts
(users vs. response times). The shape reads time from an injected clock, so
``tick()`` is tested without waiting. Selected in the locustfile by
``LOAD_SHAPE=step`` (a shape class in a locustfile always wins over -u/-t, so
it is only defined there when asked for), as ``class StepLoad(StepSchedule,
LoadTestShape)``. The schedule itself does not import locust: importing locust
monkey-patches the whole process with gevent, which a unit-test process must
not suffer."""
from __future__ import annotations

import math
import os
import time
from typing import Callable



class StepSchedule:
    """``tick()`` as Locust's LoadTestShape expects it: (users, spawn rate) or None to stop."""

    def __init__(self, step_users: int | None = None, step_s: float | None = None,
                 max_users: int | None = None, spawn_rate: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        env = os.environ
        self.step_users = step_users or int(env.get("LOAD_STEP_USERS", "1"))
        self.step_s = step_s or float(env.get("LOAD_STEP_SECONDS", "60"))
        self.max_users = max_users or int(env.get("LOAD_MAX_USERS", "8"))
        # people start a few seconds apart, not all in the same instant
        self.spawn_rate = spawn_rate or float(env.get("LOAD_SPAWN_RATE", "0.5"))
        if self.step_users < 1 or self.max_users < 1 or self.step_s <= 0:
            raise ValueError("step users, step seconds and max users must be positive")
        self.clock = clock
        self.t0 = clock()

    def reset_time(self) -> None:
        self.t0 = self.clock()

    def get_run_time(self) -> float:
        return self.clock() - self.t0

    @property
    def steps(self) -> int:
        return math.ceil(self.max_users / self.step_users)

    def tick(self) -> tuple[int, float] | None:
        t = self.get_run_time()
        step = int(t // self.step_s)
        if step >= self.steps:
            return None
        return min(self.max_users, (step + 1) * self.step_users), self.spawn_rate
