"""Which TrafficTrace applies to a dataplane: Kuma's Dataplane-policy matcher
(kumahq/kuma pkg/core/policy/dataplane_matcher.go).

A selector matches when ONE inbound's tags carry every key of it, with an equal value or `*`. Its rank is
(number of tags, number of exact values); a policy ranks as its best matching selector. Candidates are
visited by name; a later one replaces the best only with a higher rank, or an equal rank and a strictly
later creation time, so ties go to the newest, then to the alphabetically first name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from sidecar.config.model import Dataplane, TrafficTrace

Rank = tuple[int, int]


def selector_rank(selector: Mapping[str, str], tags: Mapping[str, str]) -> Rank | None:
    exact = 0
    for key, value in selector.items():
        have = tags.get(key)
        if have is None:
            return None
        if value != "*":
            if value != have:
                return None
            exact += 1
    return (len(selector), exact)


def policy_rank(policy: TrafficTrace, dataplane: Dataplane) -> Rank | None:
    best: Rank | None = None
    for selector in policy.selectors:
        for inbound in dataplane.inbound:
            rank = selector_rank(selector, inbound.tags)
            if rank is not None and (best is None or rank > best):
                best = rank
    return best


def _time(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def best_traffic_trace(dataplane: Dataplane, policies: Iterable[TrafficTrace]) -> TrafficTrace | None:
    best: TrafficTrace | None = None
    best_rank: Rank | None = None
    for policy in sorted((p for p in policies if p.mesh == dataplane.mesh), key=lambda p: p.name):
        rank = policy_rank(policy, dataplane)
        if rank is None:
            continue
        if best is None or best_rank is None or rank > best_rank:
            best, best_rank = policy, rank
        elif rank == best_rank:
            new, old = _time(policy.creation_time), _time(best.creation_time)
            if new is not None and (old is None or new > old):
                best = policy
    return best
