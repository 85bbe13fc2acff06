"""Test environments. Prefect and Airflow cannot share one environment (FastAPI pins), so each
integration gets its own; the core suite runs in a third, lighter one. `nox` runs them all."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "core", "prefect", "airflow"]
nox.options.reuse_venv = "yes"

PYTHON = "3.11"
# prefect 3.9.x asks for certifi>=2026.10.19, newer than this package index has; any recent certifi works.
OVERRIDES = "constraints/overrides.txt"
AIRFLOW = "apache-airflow>=3.3,<3.4"  # the release line we claim


# Every Python process a test starts imports Ray, Prefect or Airflow: a Ray node starts five to thirteen.
# uv installs no bytecode by default, and where PYTHONDONTWRITEBYTECODE is set (as on CI) none is ever
# written, so each process compiled its imports from source again: a local head and two workers took
# 35 CPU-seconds to start, 14 with bytecode (measured). Environments that run code get it at install.
COMPILED = "--compile-bytecode"


def _install(session: nox.Session, extras: str) -> None:
    session.install(COMPILED, "--override", OVERRIDES, "-e", f".[{extras}]")


def _compile_own_code(session: nox.Session) -> None:
    """RayDog's packages are installed editable, so their bytecode is compiled here (see COMPILED)."""
    session.run("python", "-m", "compileall", "-q", "raydog_core", "raydog_prefect", "raydog_airflow")


def _pytest(session: nox.Session, *default_paths: str) -> None:
    """pytest on the session's tests. Arguments that are test files or folders (`nox -s core --
    tests/core`) replace the session's own paths; the rest are added (`nox -s core -- -k lease`)."""
    paths = [arg for arg in session.posargs if arg.startswith("tests") and Path(arg.split("::")[0]).exists()]
    others = [arg for arg in session.posargs if arg not in paths]
    _compile_own_code(session)
    session.run(
        "pytest", "-p", "no:cacheprovider", "-ra", "--durations=40", *(paths or default_paths), *others
    )


# The packages mypy checks here (settings in pyproject.toml's [tool.mypy]); raydog_prefect is checked in the
# prefect session: it needs Prefect installed, which cannot share this environment with Airflow.
TYPED_PACKAGES = ("raydog_core", "raydog_airflow")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff, then mypy against the real types of Ray, Airflow and the YellowDog SDK (hence the install)."""
    session.install("--override", OVERRIDES, "-e", ".[airflow,test,lint]")  # no bytecode: no code runs here
    session.install("--override", OVERRIDES, AIRFLOW)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", *(arg for package in TYPED_PACKAGES for arg in ("-p", package)))


@nox.session(python=PYTHON)
def core(session: nox.Session) -> None:
    """raydog_core: builder, backends, emulator, autoscaler, tag store, tunnels."""
    _install(session, "test")
    _pytest(session, "tests", "--ignore=tests/prefect", "--ignore=tests/airflow")


@nox.session(python=PYTHON)
def prefect(session: nox.Session) -> None:
    """raydog_prefect: type-checked here (it needs Prefect, which cannot share lint's environment with
    Airflow), then its tests."""
    _install(session, "prefect,test,lint")
    session.run("mypy", "-p", "raydog_prefect")
    _pytest(session, "tests/prefect")


@nox.session(python=PYTHON)
def airflow(session: nox.Session) -> None:
    _install(session, "airflow,test")
    session.install(COMPILED, "--override", OVERRIDES, AIRFLOW)
    _pytest(session, "tests/airflow")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The README's main job: a workload on a local cluster that grows and shrinks, then a Prefect flow."""
    _install(session, "prefect,test")
    _compile_own_code(session)
    session.run("python", "examples/builder/grow_and_shrink.py")
    session.run("python", "examples/prefect/fan_out.py", env={"PREFECT_SERVER_ANALYTICS_ENABLED": "false"})


@nox.session(python=PYTHON)
def benchmarks(session: nox.Session) -> None:
    _install(session, "prefect,test,bench")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(python=PYTHON)
def benchmarks_airflow(session: nox.Session) -> None:
    """The Airflow DAG overhead benchmark: it needs Airflow, which cannot share the Prefect environment."""
    _install(session, "airflow,test")
    session.install(COMPILED, "--override", OVERRIDES, AIRFLOW)
    session.run(
        "python",
        "-m",
        "benchmarks.airflow_overhead",
        "--json",
        "benchmarks/results/airflow.json",
        *session.posargs,
    )
