"""The soak (benchmarks/soak.py) for 45 seconds: the real RayDogNodeProvider on the YellowDog
backend against the emulator with faults on, a real redis-server tag store on the head. A correctness
check, not a timing: the provider agrees with the platform every round, nothing leaks, and the client's
memory does not run away (bounds far above what a minute can honestly add)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray.autoscaler.tags import TAG_RAY_USER_NODE_TYPE

from benchmarks import soak
from raydog_core.processes import wait_until

pytestmark = pytest.mark.slow

# Busier than the 30-minute defaults, so 45 seconds see every path: launches into existing and
# re-created pools (idle pools shut down after 15 s), terminations, dying instances, failing tasks.
SHORT = soak.SoakSettings(
    minutes=0.75,
    interval_s=1.0,
    idle_shutdown_s=15.0,
    death_rate=0.1,
    demand_change_rate=0.35,
    failing_share=8,
    warmup_fraction=0.2,
)
RSS_GROWTH_BOUND_MB = 64.0
TRACED_GROWTH_BOUND_MB = 16.0


def test_a_short_soak_stays_consistent_and_leaks_nothing(raydog_home: Path) -> None:
    report = soak.run(SHORT, log=lambda _: None)
    summary = soak.summary_line(report)

    assert report["violation_count"] == 0, f"{summary}: {report['violations'][:5]}"
    assert report["leaks"] == [], summary
    assert report["redis_keys_at_teardown"], "the MONITOR watch saw no keys to delete"
    assert report["redis_keys_left"] == [], summary
    # The churn really happened, with faults.
    assert report["rounds"] >= 30
    assert report["nodes_requested"] > 0 and report["nodes_terminated"] > 0, summary
    assert report["faults"]["api_errors_injected"] > 0, summary
    assert report["platform_at_end"]["tasks_lost_with_instance"] > 0, summary
    # Memory: bounded, generously (a leak per round would blow through these).
    memory = report["memory"]
    assert memory["rss_mb"]["max"] - memory["rss_mb"]["first"] < RSS_GROWTH_BOUND_MB, memory
    assert memory["traced_mb"]["max"] - memory["traced_mb"]["first"] < TRACED_GROWTH_BOUND_MB, memory


def test_a_node_type_launches_again_after_its_idle_pool_shut_down(raydog_home: Path) -> None:
    """YellowDog shuts idle pools down; the provider then puts the type's new nodes in a new pool
    (found by the soak: before, every later launch of that type failed with 'create a new pool')."""
    control = soak.EmulatorControl(seed=1)  # in this process: no faults, just the pool's idle shutdown
    run = soak.Soak(control, soak.SoakSettings(idle_shutdown_s=1.0), log=lambda _: None)
    try:
        run.up()
        pool = soak.pool_name(run.config, "cpu_small")
        with run.monitor() as monitor:
            run.launch(monitor, "cpu_small", 1)
            monitor.terminate_nodes(monitor.non_terminated_nodes({TAG_RAY_USER_NODE_TYPE: "cpu_small"}))
            assert wait_until(lambda: control.pools(run.name).get(pool) == "TERMINATED", 60, 0.2)
            run.launch(monitor, "cpu_small", 2)
            assert run.tally.documented_errors == {}
            assert len(monitor.non_terminated_nodes({TAG_RAY_USER_NODE_TYPE: "cpu_small"})) == 2
            assert wait_until(lambda: control.pools(run.name).get(pool) == "RUNNING", 60, 0.2)
    finally:
        teardown = run.down() if run.cluster_id else {"leaks": [], "redis_keys_left": []}
        left = control.stop()
    assert teardown["leaks"] == [] and teardown["redis_keys_left"] == [], teardown
    assert left == []
