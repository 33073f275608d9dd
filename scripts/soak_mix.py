"""The soak test's traffic mix (scenarios, their weights and allowed outcomes) and its records
(counts per outcome, samples of the gateway's resources)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

UPSTREAM_IDLE_S = 2.0  # the upstreams' idle timeout, so that a stalled stream ends quickly

# -- scenarios ---------------------------------------------------------------------------------
#
# Outcomes: ok (2xx, complete), stream_error (2xx stream ended by an error event), http_4xx,
# http_5xx, disconnect (the client left mid-stream on purpose), incomplete (a stream that ended
# with neither its terminator nor an error event), bad_envelope (an error body not in the
# caller's shape), transport (a client-side connection error or timeout).

SCENARIOS: dict[str, tuple[float, frozenset[str]]] = {  # name: (weight, allowed outcomes)
    "ok": (62, frozenset({"ok"})),
    "disconnect": (8, frozenset({"disconnect"})),
    "status_429": (3, frozenset({"http_4xx"})),
    "status_500": (3, frozenset({"http_5xx"})),
    "status_529": (3, frozenset({"http_5xx"})),
    "cut": (5, frozenset({"stream_error"})),
    "stall": (2, frozenset({"stream_error"})),
    "error_after": (4, frozenset({"stream_error"})),
    "invalid_json": (3, frozenset({"http_4xx"})),
    "invalid_fields": (3, frozenset({"http_4xx"})),
    "unknown_model": (3, frozenset({"http_4xx"})),
    "bad_key": (1, frozenset({"http_4xx"})),
}
UPSTREAM_FAULTS = {"status_500", "status_529"}  # where a 5xx is the expected answer


@dataclass
class Stats:
    by_outcome: Counter[str] = field(default_factory=Counter)
    by_scenario: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_route: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    sent: int = 0
    metered: int = 0  # requests sent with the customer key: one ledger row each
    uncertain: int = 0  # of those, ended by a client-side error: the gateway may not have seen them
    skipped: int = 0  # not sent: too many in flight (the gateway fell behind the offered rate)
    last_bad_key: float = 0.0


@dataclass
class Sample:
    t: float  # seconds since the traffic started
    rss_kb: int
    fds: int
    processes: int
    rows: int
    metered: int
    outcomes: dict[str, int]
