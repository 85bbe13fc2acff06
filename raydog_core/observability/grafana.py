"""Grafana provisioning for the observability node: a Prometheus datasource and Ray's own dashboards.

Ray's dashboard writes these files on the head for a Grafana on the same machine (`metrics_head.py`).
RayDog's Grafana runs on the observability node, so that node writes them itself, with Ray's dashboard
factory and templates, for the Ray installed there (keep it the cluster's version)::

    python -m raydog_core.observability.grafana <output dir> <prometheus url> <password file>

writes `grafana.ini` (provisioning path, embedding in Ray's dashboard, no anonymous access),
`provisioning/datasources/raydog.yml` (Prometheus with the cluster's basic-auth password, so the files
are 0600), `provisioning/dashboards/raydog.yml` and `dashboards/*.json`.

Unlike Ray's own `grafana.ini`, anonymous viewers are off: Ray's dashboard does not need them. It asks
Grafana's unauthenticated `/api/health`, and the panels it embeds load in the user's browser, which
sends Grafana's session cookie to the embedded panels once the user has logged in to Grafana (same
site: both come through the SSH tunnel's 127.0.0.1). An anonymous viewer could query every metric
through Grafana's datasource proxy, past Prometheus' password.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import yaml
from ray.dashboard.modules.metrics import grafana_dashboard_factory
from ray.dashboard.modules.metrics.metrics_head import DEFAULT_PROMETHEUS_NAME
from ray.dashboard.modules.metrics.templates import (
    DASHBOARD_PROVISIONING_TEMPLATE,
    GRAFANA_DATASOURCE_TEMPLATE,
)

from raydog_core.observability.password import PROMETHEUS_USER
from raydog_core.private_files import write_private

# Every dashboard the installed Ray can generate (default, data, serve, train, ...), found by name so a
# newer Ray's new dashboards come along without a change here.
_GENERATOR = re.compile(r"generate_(\w+)_grafana_dashboard")
GRAFANA_INI = """
[security]
allow_embedding = true

[auth.anonymous]
enabled = false

[users]
allow_sign_up = false

[paths]
provisioning = {provisioning}
"""


def ray_dashboards() -> dict[str, str]:
    """{file name: dashboard JSON} for every dashboard of Ray's factory."""
    dashboards = {}
    for name in sorted(dir(grafana_dashboard_factory)):
        match = _GENERATOR.fullmatch(name)
        if match:
            content, _uid = getattr(grafana_dashboard_factory, name)()
            dashboards[f"{match.group(1)}_grafana_dashboard.json"] = content
    return dashboards


def write_provisioning(output_dir: Path, prometheus_url: str, password: str) -> list[Path]:
    """Write Grafana's configuration under `output_dir` (overwriting an earlier one); returns the files.

    The datasource carries Ray's default name ("Prometheus"), which Ray's dashboard passes to the
    Grafana panels it embeds; Grafana queries it as the `raydog` user with the cluster's password.
    """
    provisioning = output_dir / "provisioning"
    dashboards = output_dir / "dashboards"
    files = {
        output_dir / "grafana.ini": GRAFANA_INI.format(provisioning=provisioning),
        provisioning / "datasources" / "raydog.yml": _datasource(prometheus_url, password),
        provisioning / "dashboards" / "raydog.yml": DASHBOARD_PROVISIONING_TEMPLATE.format(
            dashboard_output_folder=dashboards
        ),
    }
    files.update({dashboards / name: content for name, content in ray_dashboards().items()})
    for path, content in files.items():
        write_private(path, content)
    return list(files)


def _datasource(prometheus_url: str, password: str) -> str:
    """Ray's datasource template, with the basic auth RayDog's Prometheus asks for."""
    provisioning = yaml.safe_load(
        GRAFANA_DATASOURCE_TEMPLATE(
            prometheus_name=DEFAULT_PROMETHEUS_NAME,
            prometheus_host=prometheus_url,
            jsonData={},
            secureJsonData={"basicAuthPassword": password},
        )
    )
    provisioning["datasources"][0].update(basicAuth=True, basicAuthUser=PROMETHEUS_USER)
    return yaml.safe_dump(provisioning)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m raydog_core.observability.grafana",
        description="Write Grafana provisioning for Ray: a Prometheus datasource and Ray's dashboards.",
    )
    parser.add_argument("output_dir", type=Path, help="where to write grafana.ini and provisioning/")
    parser.add_argument("prometheus_url", help="the Prometheus Grafana queries, e.g. http://127.0.0.1:9090")
    parser.add_argument("password_file", type=Path, help="the cluster's observability password")
    args = parser.parse_args(argv)
    password = args.password_file.read_text().strip()
    files = write_provisioning(args.output_dir.resolve(), args.prometheus_url, password)
    print(f"raydog: Grafana provisioning for Ray written to {args.output_dir} ({len(files)} files)")


if __name__ == "__main__":
    main()
