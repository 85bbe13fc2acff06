"""Layers depend downwards only: the core imports no integration and none of its own test tooling.

Integrations and the emulator plug into the core through entry points (`raydog.run_status`,
`raydog.commands` in pyproject.toml), so no core module outside `raydog_core/testing` may import
`raydog_prefect`, `raydog_airflow` or `raydog_core.testing`, neither at module level nor inside a
function. The walk reads the source (AST), so it also sees imports that a test run never executes.
"""

from __future__ import annotations

import ast
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import raydog_core

CORE = Path(raydog_core.__file__).parent
FORBIDDEN = ("raydog_prefect", "raydog_airflow", "raydog_core.testing")


def _core_modules() -> list[Path]:
    return sorted(p for p in CORE.rglob("*.py") if "testing" not in p.relative_to(CORE).parts)


def _imported_names(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module an import statement names, plus `importlib.import_module("...")` string literals."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append((node.lineno, node.module))
            if not _forbidden(node.module):  # `from raydog_core import testing` names a submodule
                names += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.append((node.lineno, node.args[0].value))
    return names


def _forbidden(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in FORBIDDEN)


def test_the_walk_sees_the_core() -> None:
    modules = _core_modules()
    assert CORE / "cli.py" in modules and CORE / "reaper.py" in modules
    assert not any("testing" in p.parts for p in modules)


@pytest.mark.parametrize("path", _core_modules(), ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_imports_no_integration_and_no_test_tooling(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = [f"line {line}: {name}" for line, name in _imported_names(tree) if _forbidden(name)]
    assert not bad, f"{path.relative_to(CORE.parent)} imports upwards: {bad}"


def test_the_checker_catches_lazy_and_dynamic_imports() -> None:
    source = (
        "def f():\n    from raydog_airflow.run_status import airflow_run_finished\n"
        "def g():\n    import importlib; importlib.import_module('raydog_core.testing.emulator')\n"
        "from raydog_core import testing\n"
    )
    found = sorted(name for _, name in _imported_names(ast.parse(source)) if _forbidden(name))
    assert found == ["raydog_airflow.run_status", "raydog_core.testing", "raydog_core.testing.emulator"]


def test_integrations_plug_in_through_entry_points() -> None:
    run_status = {e.name: e.value for e in entry_points(group="raydog.run_status")}
    assert run_status["prefect"] == "raydog_prefect.run_status:prefect_run_finished"
    assert run_status["airflow"] == "raydog_airflow.run_status:airflow_run_finished"
    commands = {e.name: e.value for e in entry_points(group="raydog.commands")}
    assert commands["emulator"] == "raydog_core.testing.emulator.cli:emulator_command"
