"""Health of one deployment: a small circuit breaker.

States (``state(now)``):

* ``healthy``: selectable.
* ``cooldown``: not selectable until ``cooldown_until``. Entered after
  ``cooldown_failures`` consecutive failures (for ``cooldown_seconds``), at once on a
  429/503/529 that carries ``retry-after`` (for that long), and again when a probe fails.
* ``half_open``: the cooldown is over; one request (the probe) may use the deployment.
  Its success makes it healthy, its failure starts a new cooldown; while the probe is in
  flight the deployment is not selectable by other requests.

A deployment in cooldown is skipped while another one can serve; when none can, the
router still uses the one whose cooldown ends first rather than refusing the request
(see ``attempts``). Everything here is per process and costs a few attribute writes.
"""

from __future__ import annotations

from typing import Literal

State = Literal["healthy", "cooldown", "half_open"]

# Statuses whose retry-after puts a deployment into cooldown at once (the upstream said "not now").
COOLDOWN_STATUSES = frozenset({429, 503, 529})


class Health:
    __slots__ = (
        "cooldown_since",
        "cooldown_until",
        "cooldowns",
        "failures",
        "last_error",
        "last_error_at",
        "probing",
    )

    def __init__(self) -> None:
        self.failures = 0  # consecutive
        self.cooldown_until: float | None = None  # time.monotonic(); None when healthy
        self.cooldown_since = 0.0
        self.probing = False  # a half-open probe is in flight
        self.cooldowns = 0  # cooldowns entered since start
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    def state(self, now: float) -> State:
        until = self.cooldown_until
        if until is None:
            return "healthy"
        return "cooldown" if now < until else "half_open"

    def available(self, now: float) -> bool:
        until = self.cooldown_until
        return until is None or (now >= until and not self.probing)

    def begin(self, now: float) -> None:
        """An attempt starts on this deployment; in half-open state it is the probe."""
        until = self.cooldown_until
        if until is not None and now >= until:
            self.probing = True

    def success(self, started: float) -> None:
        """The upstream accepted an attempt that began at ``started``."""
        if self.cooldown_until is not None and started < self.cooldown_since:
            return  # began before the cooldown: says nothing about now (the retry-after stands)
        self.failures = 0
        self.cooldown_until = None
        self.probing = False

    def neutral(self) -> None:
        """The attempt said nothing about health (a client error, a cancelled request)."""
        self.probing = False

    def failure(
        self,
        now: float,
        *,
        status: int | None,
        retry_after: float | None,
        message: str,
        threshold: int,
        cooldown: float,
    ) -> bool:
        """Record a failure; True when it started a cooldown."""
        self.failures += 1
        self.last_error, self.last_error_at = message[:300], now
        was_probe, self.probing = self.probing, False
        if retry_after is not None and status in COOLDOWN_STATUSES:
            seconds = retry_after
        elif was_probe or self.failures >= threshold:
            seconds = cooldown
        else:
            return False
        until = now + seconds
        if self.cooldown_until is not None and now < self.cooldown_until:
            # Already cooling (a request that started before the cooldown failed too): extend only.
            self.cooldown_until = max(self.cooldown_until, until)
            return False
        self.cooldown_until, self.cooldown_since = until, now
        self.cooldowns += 1
        return True
