"""The `raydog` command: build, inspect, grow, shrink and tear down clusters; list and reap them.

Commands that live outside the core (the YellowDog emulator in `raydog_core.testing`, an integration's
tools) plug in through the `raydog.commands` entry-point group and are imported only when run, so the
core never imports them and `raydog up` does not pay for them.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import timedelta
from importlib.metadata import entry_points
from pathlib import Path

import click

from raydog_core import lease_listing, postmortem
from raydog_core.backends import create_backend
from raydog_core.backends.base import Backend
from raydog_core.cluster import RayDogCluster
from raydog_core.errors import RayDogError
from raydog_core.proxy import RayDogClusterProxy
from raydog_core.reaper import (
    Selector,
    list_and_tidy,
    reap,
    run_finished_check,
    run_status_sources,
    select_clusters,
)
from raydog_core.spec import load_spec_file
from raydog_core.state import ClusterState

COMMANDS_GROUP = "raydog.commands"
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("raydog: %(message)s"))
    logger = logging.getLogger("raydog")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def _fail(error: Exception) -> None:
    raise click.ClickException(str(error)) from None


def _default_state_file(name: str) -> Path:
    return Path(f"{name}.raydog.json")


def _cluster(state_file: str) -> RayDogCluster:
    return RayDogCluster.from_state(ClusterState.from_file(state_file))


class PluginGroup(click.Group):
    """The built-in commands plus those named in the `raydog.commands` entry points, loaded on use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        plugins = {entry.name for entry in entry_points(group=COMMANDS_GROUP)}
        return sorted(set(super().list_commands(ctx)) | plugins)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        for entry in entry_points(group=COMMANDS_GROUP, name=cmd_name):
            loaded = entry.load()
            if isinstance(loaded, click.Command):
                return loaded
        return None


@click.group(cls=PluginGroup)
@click.option("-v", "--verbose", is_flag=True, help="Debug output.")
def main(verbose: bool) -> None:
    """RayDog: a Ray cluster for exactly as long as your work needs one."""
    _setup_logging(verbose)


@main.command()
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option("-s", "--state-file", type=click.Path(dir_okay=False), help="Where to save the cluster state.")
@click.option("--timeout", type=float, default=None, help="Build timeout in seconds (default: the spec's).")
def up(spec_file: str, state_file: str | None, timeout: float | None) -> None:
    """Build a cluster from a YAML, TOML or JSON spec and save its state."""
    try:
        spec = load_spec_file(spec_file)
        target = Path(state_file) if state_file else _default_state_file(spec.cluster_name)
        cluster = RayDogCluster(
            spec=spec, on_state=lambda state: state.write(target)
        )  # from the first resource
        click.echo(f"building cluster {spec.cluster_name} ({spec.backend}); state in {target}", err=True)
        cluster.build(timeout)
    except RayDogError as error:
        _fail(error)
    click.echo(f"ray address:    {cluster.ray_address}")
    click.echo(f"dashboard:      {cluster.dashboard_url}")
    click.echo(f"node logs:      {cluster.log_dir}")
    click.echo(f"shut down with: raydog down {target}")


@main.command()
@click.argument("spec_file", type=click.Path(dir_okay=False))
def plan(spec_file: str) -> None:
    """Check a spec against its backend and price it; creates nothing (exit 1 if it could not build)."""
    try:
        spec = load_spec_file(spec_file)
        result = RayDogCluster(spec=spec).plan()
    except RayDogError as error:
        _fail(error)
    click.echo(result.table())
    if not result.ok:
        raise click.ClickException(f"cluster {spec.cluster_name} cannot be built as planned")


@main.command()
@click.argument("state_file", type=click.Path(dir_okay=False))
def status(state_file: str) -> None:
    """Show a cluster's nodes as the backend sees them."""
    try:
        proxy = RayDogClusterProxy()
        state = proxy.load_saved_state_from_json_file(state_file)
        nodes = proxy.nodes()
    except RayDogError as error:
        _fail(error)
    click.echo(f"cluster {state.cluster_name} ({state.backend}, {state.phase}) at {state.ray_address}")
    for node in nodes:
        click.echo(
            f"  {node.node_id:<32} {node.role.value:<14} {node.status.value:<11} {node.private_ip or '-'}"
        )
        if node.detail:
            click.echo("    " + node.detail.replace("\n", "\n    "))
    _echo_post_mortem(state.cluster_id)


def _echo_post_mortem(cluster_id: str) -> None:
    bundle = postmortem.find(cluster_id)
    if bundle is not None:
        click.echo(f"post-mortem:    {bundle.path} (raydog logs {bundle.path})")


@main.command()
@click.argument("target")
@click.option(
    "--extract", "into", type=click.Path(file_okay=False), help="Extract the bundle's files into this folder."
)
def logs(target: str, into: str | None) -> None:
    """A cluster's post-mortem: its summary and files. TARGET is a state file, a bundle or a cluster id."""
    bundle = _find_bundle(target)
    if bundle is None:
        raise click.ClickException(
            f"no post-mortem for {target!r} on this machine: bundles are written where the cluster was "
            f"shut down, under {postmortem.directory()}"
        )
    click.echo(bundle.summary)
    if into is None:
        for name in postmortem.members(bundle.path):
            click.echo(f"  {name}")
        click.echo(f"extract with: raydog logs {bundle.path} --extract DIR")
        return
    postmortem.extract(bundle.path, Path(into))
    click.echo(f"extracted into {into}")


def _find_bundle(target: str) -> postmortem.PostMortem | None:
    path = Path(target)
    if path.name.endswith(postmortem.SUFFIX):
        return postmortem.read(path)
    if path.is_file():
        try:
            return postmortem.find(ClusterState.from_file(path).cluster_id)
        except RayDogError as error:
            _fail(error)
    return postmortem.find(target)


@main.command("add-pool")
@click.argument("state_file", type=click.Path(dir_okay=False))
@click.option("-n", "--nodes", "count", type=int, required=True, help="Number of worker nodes.")
@click.option("--name", "internal_name", help="The pool's internal name.")
@click.option("--script", type=click.Path(dir_okay=False), help="Worker start-up script (default: RayDog's).")
@click.option("--num-cpus", type=int, default=1, show_default=True)
@click.option("--num-gpus", type=int, default=None)
def add_pool(
    state_file: str,
    count: int,
    internal_name: str | None,
    script: str | None,
    num_cpus: int,
    num_gpus: int | None,
) -> None:
    """Add a worker pool to a running cluster."""
    try:
        cluster = _cluster(state_file)
        pool_id = cluster.add_worker_pool(
            worker_pool_node_count=count,
            worker_pool_internal_name=internal_name,
            worker_node_task_script=script,
            worker_node_resources={"num_cpus": num_cpus, "num_gpus": num_gpus},
        )
        cluster.save_state_to_json_file(state_file)
    except RayDogError as error:
        _fail(error)
    click.echo(pool_id)


@main.command("remove-pool")
@click.argument("state_file", type=click.Path(dir_okay=False))
@click.argument("pool")
def remove_pool(state_file: str, pool: str) -> None:
    """Remove a worker pool, by id or internal name; its nodes leave Ray."""
    try:
        cluster = _cluster(state_file)
        if pool in cluster.worker_pool_internal_names:
            cluster.remove_worker_pool_by_internal_name(pool)
        else:
            cluster.remove_worker_pool(pool)
        cluster.save_state_to_json_file(state_file)
    except RayDogError as error:
        _fail(error)
    click.echo(f"removed {pool}")


@main.command()
@click.argument("state_file", type=click.Path(dir_okay=False))
def down(state_file: str) -> None:
    """Shut a cluster down from its saved state (idempotent)."""
    try:
        proxy = RayDogClusterProxy()
        state = proxy.load_saved_state_from_json_file(state_file)
        proxy.shut_down()
        state.write(state_file)
    except RayDogError as error:
        _fail(error)
    click.echo(f"cluster {state.cluster_name} is shut down")
    _echo_post_mortem(state.cluster_id)


def _backend(kind: str) -> Backend:
    try:
        return create_backend(kind)
    except RayDogError as error:
        _fail(error)
        raise  # unreachable: _fail raises


def _parse_duration(value: str | None) -> timedelta | None:
    if value is None:
        return None
    match = DURATION.match(value.strip())
    if not match:
        raise click.BadParameter(f"{value!r}: use a number and a unit, e.g. 90s, 30m, 6h or 2d")
    return timedelta(seconds=float(match.group(1)) * UNIT_SECONDS[match.group(2)])


def _parse_labels(values: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: use KEY=VALUE")
        labels[key] = value
    return labels


backend_option = click.option(
    "--backend",
    type=click.Choice(["local", "yellowdog"]),
    default="local",
    show_default=True,
    help="Where to look (YellowDog credentials from YD_API_KEY_ID / YD_API_KEY_SECRET / YD_API_URL).",
)


@main.command("list")
@backend_option
@click.option("--all", "include_stopped", is_flag=True, help="Include clusters that are shut down.")
def list_clusters(backend: str, include_stopped: bool) -> None:
    """List the RayDog clusters this machine or these credentials can see."""
    where = _backend(backend)
    records = list_and_tidy(where)
    used = "USED (finished)"
    header = f"{'NAME':<24} {'BACKEND':<10} {'STATE':<8} {'NODES':>5}  {'CREATED':<20} {'LEASES':<20} "
    click.echo(header + (f"{used:<36} " if include_stopped else "") + "LABELS")
    for record in records:
        if record.state != "running" and not include_stopped:
            continue
        labels = ",".join(f"{k}={v}" for k, v in sorted(record.labels.items()))
        created = record.created_at.strftime("%Y-%m-%d %H:%M:%S")
        view = lease_listing.lease_view(where, record)
        line = (
            f"{record.name:<24} {record.backend:<10} {record.state:<8} {record.live_nodes:>5}  {created:<20} "
            f"{lease_listing.describe(view):<20} "
        )
        if include_stopped:
            line += f"{record.usage.describe() if record.usage else '-':<36} "
        click.echo(line + labels)
        for holder in lease_listing.holder_lines(view):
            click.echo(f"  {holder}")


@main.command("reap")
@backend_option
@click.option("--label", "labels", multiple=True, help="KEY=VALUE; repeat to require several.")
@click.option("--older-than", help="Only clusters older than this, e.g. 6h.")
@click.option("--name", help="Only the cluster with exactly this name.")
@click.option(
    "--run-finished",
    type=click.Choice(run_status_sources()),
    help="Only clusters whose orchestrator run has finished (prefect: asked of the Prefect API; "
    "airflow: of the Airflow metadata database configured on this machine).",
)
@click.option(
    "--api-url",
    "--prefect-api-url",
    "api_url",
    help="The orchestrator's API URL (Prefect: $PREFECT_API_URL).",
)
@click.option("--dry-run", is_flag=True, help="Print what would be shut down; change nothing.")
def reap_command(
    backend: str,
    labels: tuple[str, ...],
    older_than: str | None,
    name: str | None,
    run_finished: str | None,
    api_url: str | None,
    dry_run: bool,
) -> None:
    """Shut down the running clusters that match every given selector (safe to run from cron)."""
    finished = None
    if run_finished is not None:
        try:
            finished = run_finished_check(run_finished, api_url)
        except ValueError as error:
            raise click.UsageError(str(error)) from None
    selector = Selector(
        labels=_parse_labels(labels), older_than=_parse_duration(older_than), name=name, run_finished=finished
    )
    if selector.is_empty():
        raise click.UsageError("give at least one of --label, --older-than, --name or --run-finished")
    chosen = _backend(backend)
    if dry_run:
        for record in select_clusters(chosen, selector):
            click.echo(f"would shut down {record.name} ({record.cluster_id})")
        return
    for result in reap(chosen, selector):
        outcome = (
            "shut down" if not result.failures else "shut down with errors: " + "; ".join(result.failures)
        )
        click.echo(f"{result.cluster.name} ({result.cluster.cluster_id}): {outcome}")


if __name__ == "__main__":
    main()
