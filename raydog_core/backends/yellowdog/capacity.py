"""Pools the platform cannot fill, told apart from pools that are only slow to boot.

When a cloud has no capacity for an instance type (or a quota is reached), YellowDog reports it on the
pool's compute requirement: each compute source it tried shows status ERRORED with the provider's
message. A pool whose every source errored gets no node however long one waits, so the builder fails
at once with that message instead of at its timeout, and a demand watch names it. A pool whose
instances are still booting has sources that are fine: that is a slow boot, not a shortage.
"""

from __future__ import annotations

from yellowdog_client.model import ComputeRequirement, ComputeSourceStatus


def shortage(compute: ComputeRequirement) -> str | None:
    """The providers' messages when every source of the requirement errored, else None."""
    strategy = compute.provisionStrategy
    sources = list(strategy.sources or []) if strategy is not None else []
    errored = [s for s in sources if getattr(s, "status", None) == ComputeSourceStatus.ERRORED]
    if not sources or len(errored) < len(sources):
        return None
    return "; ".join(sorted({getattr(s, "statusMessage", None) or "no reason given" for s in errored}))
