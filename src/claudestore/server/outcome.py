"""What happened to one request, handed to whoever listens when it is finished.

Exactly one ``Outcome`` is produced per generation request, in every ending
(complete, refused, upstream failure, client disconnect). The accounts and metering
layer turns it into a ledger row; tests read it to check usage.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from claudestore.core.response import Usage


@dataclass(slots=True)
class Outcome:
    request_id: str
    endpoint: str  # "anthropic" | "openai"
    key_id: int | None = None
    account_id: int | None = None
    model: str | None = None
    upstream: str | None = None
    upstream_model: str | None = None
    streamed: bool = False
    status: int = 200
    error_kind: str | None = None
    stop_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    client_disconnected: bool = False
    relayed_deltas: int = 0
    started: float = field(default_factory=time.perf_counter)
    first_byte_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0  # upstream attempts made (retries and fallbacks included); 0: none was made
    first_token_at: float | None = None  # streams: when the first content delta was sent
    cost_nanos: int = 0  # set by settlement: what the customer was charged

    @property
    def latency_ms(self) -> float | None:
        return None if self.finished_at is None else (self.finished_at - self.started) * 1000

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_byte_at is None else (self.first_byte_at - self.started) * 1000


OutcomeListener = Callable[[Outcome], None]
