"""The results table a reader wants: each figure beside its anchor from the same run, the ratio and the
target. Built from results.json, so a benchmark that did not run simply leaves its rows out."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Row = tuple[str, str, str, str, str]  # measurement, RayDog, anchor, ratio, target
HEADER = "| measurement | RayDog | anchor (same run) | ratio | target |\n| --- | --- | --- | --- | --- |"


def _s(value: Any) -> str:
    return f"{value:.2f} s" if isinstance(value, (int, float)) else "—"


def _ratio(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "—"


def _cluster_up(data: dict[str, Any]) -> Iterator[Row]:
    for shape, r in data.get("cluster_up", {}).items():
        yield (
            f"cluster up, {shape} workers",
            _s(r["raydog_up_s"]),
            f"{_s(r['plain_script_up_s'])} plain `ray start` script",
            _ratio(r["up_ratio"]),
            "≤ 1.0",
        )
        yield (f"shut-down, {shape}", _s(r["raydog_down_s"]), f"{_s(r['sigterm_wait_down_s'])} SIGTERM, wait, SIGKILL", _ratio(r["down_ratio"]), "≤ 3 s")  # fmt: skip


def _prefect(data: dict[str, Any]) -> Iterator[Row]:
    yield (
        f"Prefect per-task overhead, {data['tasks']} tasks x {data['rounds']} rounds",
        f"{data['raydog_task_runner_ms_per_task']:.1f} ms",
        f"{data['ray_task_runner_ms_per_task']:.1f} ms `prefect_ray.RayTaskRunner`",
        _ratio(data["ratio"]),
        f"≤ {data['ratio_target']}",
    )


def _airflow(data: dict[str, Any]) -> Iterator[Row]:
    yield (
        "Airflow DAG wall time (build, job, shut-down), median",
        _s(data["raydog_median_s"]),
        f"{_s(data['plain_median_s'])} BashOperators: plain `ray start`, `ray job submit`, stop by PID",
        _ratio(data["ratio"]),
        "≤ 1.0",
    )


def _latency(data: dict[str, Any]) -> Iterator[Row]:
    ours, fake, ratios = data["raydog_local"], data["ray_fake_multinode"], data["ratio_raydog_over_fake"]
    names = {
        "demand_to_worker_alive_s": "unmet demand → new worker alive",
        "request_resources_to_worker_alive_s": "`request_resources` → new worker alive",
        "idle_scale_down_s": "idle scale-down (idle_timeout 0.25 min)",
    }
    for key, label in names.items():
        yield (label, _s(ours.get(key)), f"{_s(fake.get(key))} Ray's fake multi-node provider", _ratio(ratios.get(key)), "≤ 1.0")  # fmt: skip
    if "plain_ray_start_join_s" in fake:
        yield (
            "a plain `ray start` worker joining (no autoscaler)",
            "—",
            _s(fake["plain_ray_start_join_s"]),
            "—",
            "—",
        )


def _update_cost(data: dict[str, Any]) -> Iterator[Row]:
    for r in data.values():
        if isinstance(r, dict) and "median_ms" in r:
            calls = f"{r['backend_calls_per_update']:g} backend call, {r['tag_store_round_trips_per_update']:g} Redis round trip"  # fmt: skip
            yield (f"autoscaler update, {r['nodes']} nodes", f"{r['median_ms']} ms median; {calls}", "—", "—", "O(1) calls, < 50 ms")  # fmt: skip


def _yellowdog(data: list[dict[str, Any]]) -> Iterator[Row]:
    for r in data:
        yield (
            f"YellowDog build / shut-down, {r['pools']} pool(s), {r['nodes']} nodes (emulator)",
            f"{r['build_calls']} / {r['shutdown_calls']} API calls",
            "—",
            "—",
            "constant per pool (node count only adds poll rounds while nodes boot)",
        )


def _timeline(data: dict[str, Any]) -> Iterator[Row]:
    yield (
        "autoscaling timeline, real `ray up` (two waves + `request_resources`)",
        f"demand → first worker {_s(data['wave_1_demand_to_first_worker_joined_s'])}; idle → all removed "
        f"{_s(data['wave_1_done_to_all_workers_removed_s'])}; {data['workers_failed_to_start']} failed starts; "
        f"leaks {len(data['leaks_after_down'])}",
        "—",
        "—",
        f"plot: {data['image']}",
    )


def _lease_memory(data: dict[str, Any]) -> Iterator[Row]:
    yield (
        "the head's watchdog (leases), PSS",
        f"{data['watchdog_pss_mib']} MiB",
        f"{data['head_node_pss_mib']} MiB the whole head node",
        _ratio(data["watchdog_share_of_head"]),
        f"< {data['target_mib']:g} MiB",
    )
    yield (
        "a worker's head watch, PSS",
        f"{data['worker_head_watch_pss_mib']} MiB",
        f"{data['worker_node_pss_mib']} MiB the whole worker node",
        _ratio(data["worker_head_watch_pss_mib"] / data["worker_node_pss_mib"]),
        f"< {data['target_mib']:g} MiB",
    )
    if "plain_worker_pss_mib" in data:
        yield (
            "a RayDog worker node against a plain `ray start` worker, PSS",
            f"{data['worker_node_pss_mib']} MiB",
            f"{data['plain_worker_pss_mib']} MiB plain `ray start --address` worker",
            _ratio(data["worker_node_pss_mib"] / data["plain_worker_pss_mib"]),
            "≈ 1.0",
        )


def _warm_reuse(data: dict[str, Any]) -> Iterator[Row]:
    yield (
        "attach to a warm local cluster (head + 1 worker)",
        _s(data["attach_s"]),
        f"{_s(data['cold_build_s'])} cold build",
        _ratio(data["attach_ratio"]),
        f"< {data['attach_target_s']:g} s",
    )
    yield (
        f"{data['flow_runs']} back-to-back zero-config Prefect flow runs with a reuse key",
        _s(data["warm_flow_runs_s"]),
        f"{_s(data['cold_flow_runs_s'])} without",
        f"{data['flow_speed_up']:.1f}x faster",
        f"≥ {data['flow_speed_up_target']:g}x",
    )
    if "warm_flow_run_median_s" in data:
        yield (
            "one of those flow runs: attached (median), first (builds), cold (median)",
            _s(data["warm_flow_run_median_s"]),
            f"{_s(data['warm_first_flow_run_s'])} first, {_s(data['cold_flow_run_median_s'])} cold",
            _ratio(data["warm_flow_run_median_s"] / data["cold_flow_run_median_s"]),
            "—",
        )
    if "spaced_flow_speed_up" in data:
        yield (
            f"the same {data['flow_runs']} runs {data['spaced_gap_s']:g} s apart, as a schedule brings them "
            "(gaps not counted)",
            _s(data["spaced_flow_runs_s"]),
            f"{_s(data['cold_flow_runs_s'])} without",
            f"{data['spaced_flow_speed_up']:.1f}x faster",
            f"≥ {data['flow_speed_up_target']:g}x",
        )
    if "spaced_run_median_ready_workers_s" in data:
        yield (
            f"a warm flow run {data['spaced_gap_s']:g} s after the last (median): ready workers",
            _s(data["spaced_run_median_ready_workers_s"]),
            f"{_s(data['spaced_run_median_without_s'])} without (`warm_workers=0`)",
            _ratio(data["spaced_run_median_ready_workers_s"] / data["spaced_run_median_without_s"]),
            "—",
        )
    yield (
        f"{data['parallel_runs']} parallel flow runs with one reuse key",
        f"{data['parallel_clusters_built']} cluster(s) built",
        "—",
        "—",
        "1 cluster",
    )


def _soak(data: dict[str, Any]) -> Iterator[Row]:
    rss, faults = data["memory"]["rss_mb"], data["faults"]
    yield (
        f"soak, {data['settings']['minutes']:g} min of autoscaler rounds on the emulator with faults",
        f"{data['rounds']} rounds, {data['nodes_requested']} nodes started, {faults['api_errors_injected']} API "
        f"errors, {faults['instance_deaths']} instance deaths: {data['violation_count']} invariant violations, "
        f"{len(data['leaks'])} leaks; client RSS {rss['start']} → {rss['end']} MB ({rss['slope_per_10min']} MB / 10 min)",
        "—",
        "—",
        "0 violations, 0 leaks, flat memory",
    )


SECTIONS: dict[str, Callable[[Any], Iterator[Row]]] = {
    "cluster_up": lambda d: _cluster_up(d),
    "prefect_overhead": _prefect,
    "airflow_overhead": _airflow,
    "autoscaler_latency": _latency,
    "autoscaler_update_cost": _update_cost,
    "yellowdog_scaling": lambda d: _yellowdog(d["yellowdog_scaling"]),
    "autoscaling_timeline": _timeline,
    "soak": _soak,
    "lease_memory": _lease_memory,
    "warm_reuse": _warm_reuse,
}


def summary_table(results: dict[str, Any]) -> str:
    rows: list[Row] = []
    for name, section in SECTIONS.items():
        data = results.get(name)
        if isinstance(data, (dict, list)) and not (isinstance(data, dict) and "error" in data):
            try:
                rows.extend(section(data))
            except (KeyError, TypeError) as error:
                rows.append((name, f"unreadable result: {error}", "—", "—", "—"))
    return "\n".join([HEADER, *("| " + " | ".join(row) + " |" for row in rows)])
