"""A circuit breaker per backend address, and a retry budget per service:
pure state over the clock times they are given (no tasks, no sockets).

Breaker: ``closed`` (calls go through; consecutive failures are counted) →
``open`` after ``failures`` in a row (calls are refused at once, so sessions
fail over to another replica instead of each waiting for its own error) →
``half_open`` once ``cooldown_s`` has passed (exactly one call, the probe,
goes through) → ``closed`` if the probe succeeds, ``open`` again (a new
cool-down) if it fails. The table below is the whole behaviour.

Retry budget: retries are allowed only as a share of requests (``ratio``),
plus a few to start with; a backend that fails every call is then not
hammered with twice the traffic by our own retries (the retry storm that
turns a slow backend into a dead one)."""
from __future__ import annotations

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

# (state, event) -> next state; an event not listed leaves the state as it is.
#   trip: the failure that reaches the threshold;  cooled: the cool-down ended
#   and a call asks to go through (it becomes the probe).
TRANSITIONS = {
    (CLOSED, "trip"): OPEN,
    (OPEN, "cooled"): HALF_OPEN,
    (HALF_OPEN, "success"): CLOSED,
    (HALF_OPEN, "failure"): OPEN,
}


class Breaker:
    def __init__(self, failures: int = 5, cooldown_s: float = 10.0) -> None:
        if failures < 1:
            raise ValueError("failures must be at least 1")
        self.failures, self.cooldown_s = failures, cooldown_s
        self.state = CLOSED
        self.consecutive = 0
        self.opened_at = 0.0
        self.probing = False          # half_open: the one probe is out
        self.opens = 0                # times it opened (for metrics and tests)

    def _to(self, event: str, now: float) -> None:
        new = TRANSITIONS.get((self.state, event), self.state)
        if new == OPEN:
            self.opened_at, self.opens = now, self.opens + 1
        self.state = new

    def allow(self, now: float) -> bool:
        """Whether a call may go to this address now (in half_open, True once: the probe)."""
        if self.state == OPEN and now - self.opened_at >= self.cooldown_s:
            self._to("cooled", now)
            self.probing = False
        if self.state == CLOSED:
            return True
        if self.state == HALF_OPEN and not self.probing:
            self.probing = True
            return True
        return False

    def would_allow(self, now: float) -> bool:
        """``allow`` without taking the probe: for choosing among replicas."""
        if self.state == OPEN:
            return now - self.opened_at >= self.cooldown_s
        return self.state == CLOSED or not self.probing

    def success(self, now: float) -> None:
        self.consecutive = 0
        self.probing = False
        self._to("success", now)

    def release(self) -> None:
        """The probe ended without a verdict (cancelled): the next call probes."""
        self.probing = False

    def failure(self, now: float) -> None:
        self.probing = False
        if self.state == HALF_OPEN:
            self._to("failure", now)
            return
        self.consecutive += 1
        if self.state == CLOSED and self.consecutive >= self.failures:
            self._to("trip", now)


class RetryBudget:
    """Each request earns ``ratio`` of a retry, up to ``cap``; a retry spends one."""

    def __init__(self, ratio: float = 0.2, initial: float = 3.0, cap: float = 10.0) -> None:
        self.ratio, self.cap = ratio, cap
        self.tokens = min(initial, cap)

    def request(self) -> None:
        self.tokens = min(self.cap, self.tokens + self.ratio)

    def try_retry(self) -> bool:
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
