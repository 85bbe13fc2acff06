"""Node start-up scripts: the defaults shipped as package data, and user scripts given as text or path.

A script value is inline text when it has a line break or a shebang; otherwise it is a path (an optional
`file:` prefix is accepted, as upstream's autoscaler YAML uses it). Paths are checked when the spec is
validated, so a missing script fails before any node starts.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from raydog_core.errors import SpecError

ScriptSource = str | Path
Role = Literal["head", "worker", "observability"]

DEFAULT_SCRIPT_FILES: dict[str, str] = {
    "head": "head.sh",
    "worker": "worker.sh",
    "observability": "observability.sh",
}
INCLUDE = re.compile(r"^# @raydog-include (\S+)$", re.MULTILINE)


def is_inline(value: ScriptSource) -> bool:
    return isinstance(value, str) and ("\n" in value or value.startswith("#!"))


def script_path(value: ScriptSource) -> Path:
    text = str(value)
    return Path(text[len("file:") :] if text.startswith("file:") else text).expanduser()


def check_script(field: str, value: ScriptSource | None) -> ScriptSource | None:
    """Validate a script value: inline text must be non-empty, a path must be a readable file."""
    if value is None or is_inline(value):
        if value is not None and not str(value).strip():
            raise SpecError(
                field, "the script is empty", "give bash script text or the path of a script file"
            )
        return value
    path = script_path(value)
    if not path.is_file():
        raise SpecError(
            field,
            f"script file {str(path)!r} does not exist",
            "give an existing path, or inline bash text (text with a line break or a '#!' line)",
        )
    return value


def load_script(value: ScriptSource | None, role: Role) -> str:
    """The text of a script: the user's, or RayDog's default for the node role."""
    if value is None:
        return default_script(role)
    if is_inline(value):
        return str(value)
    return script_path(value).read_text()


def default_script(role: Role) -> str:
    """RayDog's script for the role, with the blocks it shares with the others put in its place (a node
    receives one script text, so shared shell functions cannot be sourced from a file there)."""
    text = _package_file(DEFAULT_SCRIPT_FILES[role])
    return INCLUDE.sub(lambda line: _package_file(line.group(1)).rstrip("\n"), text)


def _package_file(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text()


def resolve_relative_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make relative script paths in a spec file relative to that file, not to the current directory."""

    def fix(key: str, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fix(k, v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(key, v) for v in value]
        if key.endswith("_script") and isinstance(value, str) and not is_inline(value):
            path = script_path(value)
            return str(path if path.is_absolute() else (base / path).resolve())
        return value

    return {k: fix(k, v) for k, v in data.items()}
