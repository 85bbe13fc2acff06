"""The `provider:` section of a `ray up` YAML, validated once on the client by `bootstrap_config`.

Keys are upstream RayDog's (`cluster_namespace`, `ray_head_node_task_script`, ...) plus `backend`.
`bootstrap_config` resolves every `file:` reference relative to the YAML file, inlines the scripts,
copies the top-level `auth` into the provider section (so users write it once) and records each node
type's resources and pool name, so the head's monitor, which only sees the provider section, can
start nodes without reading anything from the client's disk.
"""

from __future__ import annotations

import copy
import math
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from raydog_core import limits, naming
from raydog_core.errors import SpecError
from raydog_core.scripts import default_script
from raydog_core.spec import (
    MIN_OBJECT_STORE_MB,
    ClusterFields,
    NodePlacement,
    NodeResources,
    YellowDogNodeOptions,
    build_model,
)
from raydog_core.ssh_access import SshAccess
from raydog_core.state import LeaseState
from raydog_core.tagstore import DEFAULT_PORT

FILE_PREFIX = "file:"
BOOTSTRAP_CONFIG = "ray_bootstrap_config.yaml"
MIB = 1024 * 1024
RAY_PROVIDER_KEYS = {
    "type",
    "module",
    "disable_node_updaters",
    "disable_launch_config_check",
    "foreground_node_launch",
    "worker_liveness_check",
    "use_internal_ips",
    "use_external_head_ip",
}
# Ray's own names look like "ray.worker.gpu"; they end up in environment variables and tags.
NODE_TYPE_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
Number = Annotated[float, limits.NoBool]
# Starting or stopping Ray in Ray's own command lists would fight the backend, which runs the node scripts.
_RAY_START_STOP = re.compile(r"(^|[;&|]\s*|\s)ray\s+(start|stop)\b")


class NodeTypeConfig(BaseModel):
    """What the provider needs per node type (derived by bootstrap_config from available_node_types)."""

    model_config = ConfigDict(extra="forbid")

    pool_name: str
    resources: NodeResources
    yellowdog: YellowDogNodeOptions = Field(default_factory=YellowDogNodeOptions)


class UploadFile(BaseModel):
    """A file for the head's home: `source` on the client, `target` relative to the head's home."""

    model_config = ConfigDict(extra="forbid")

    source: str
    target: str


class ProviderConfig(BaseModel):
    """The provider section. Unknown keys are errors, so a typo never silently falls back to a default."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["external"] = "external"
    module: str = "raydog_core.autoscaler.RayDogNodeProvider"
    backend: Literal["local", "yellowdog"] = "local"
    node_placement: NodePlacement | None = Field(
        None,
        description="backend yellowdog only: own_machine or shared_host; "
        "None: $RAYDOG_YELLOWDOG_NODE_PLACEMENT, else own_machine",
    )
    cluster_namespace: str = "raydog"
    cluster_tag: str | None = None
    ray_head_node_task_script: str | None = None
    ray_worker_node_task_script: str | None = None
    cluster_lifetime_hours: Number = Field(1.0, gt=0, allow_inf_nan=False)
    idle_ttl_minutes: Number | None = Field(
        None,
        ge=0,
        allow_inf_nan=False,
        description="the whole cluster ends itself after this long with no Ray driver or job (the head's "
        "watchdog, docs/leases.md); None: never, only cluster_lifetime_hours ends it",
    )
    head_node_build_timeout_minutes: Number = Field(10.0, gt=0, allow_inf_nan=False)
    # As in a builder's spec (one declaration: raydog_core.spec.ClusterFields).
    max_node_hours: Annotated[limits.Count | None, ClusterFields.model_fields["max_node_hours"]] = None
    head_node_allow_spot: Annotated[bool, ClusterFields.model_fields["head_node_allow_spot"]] = False
    files_to_upload: list[str | UploadFile] = Field(default_factory=list)
    head_node_tag_server_port: limits.Count = Field(
        DEFAULT_PORT, ge=0, le=65535, description="0: a free port (local)"
    )
    ray_auth_mode: Literal["token", "disabled"] = "token"
    autoscaler_update_interval_s: limits.Count | None = Field(
        None, ge=1, description="Ray reads it as an integer"
    )
    tag_store_via_ssh: bool | None = Field(
        None, description="None: only when the head is not reachable directly"
    )
    ssh_port: limits.Count = Field(22, ge=1, le=65535)
    known_hosts_file: str | None = None
    host_key_fingerprint: str | None = None
    auth: dict[str, Any] = Field(default_factory=dict)
    node_types: dict[str, NodeTypeConfig] = Field(default_factory=dict)
    # Ray's own keys
    disable_node_updaters: bool = True
    disable_launch_config_check: bool = True
    foreground_node_launch: bool = False
    worker_liveness_check: bool = True
    use_internal_ips: bool = False
    use_external_head_ip: bool = False

    @field_validator("cluster_namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return naming.check_name("provider.cluster_namespace", value)

    @field_validator("cluster_tag")
    @classmethod
    def _tag(cls, value: str | None) -> str | None:
        return None if value is None else naming.check_name("provider.cluster_tag", value)

    @field_validator("cluster_lifetime_hours")
    @classmethod
    def _lifetime(cls, value: float) -> float:
        shortest, longest = (
            bound / timedelta(hours=1) for bound in (limits.MIN_LIFETIME, limits.MAX_LIFETIME)
        )
        if not shortest <= value <= longest:
            raise SpecError(
                "provider.cluster_lifetime_hours",
                f"must be between {shortest:.3g} (1 minute) and {longest:g} hours, got {value}",
                "e.g. 2",
            )
        return value

    @field_validator("idle_ttl_minutes")
    @classmethod
    def _idle_ttl(cls, value: float | None) -> float | None:
        if value is None:
            return None
        limits.check_duration(
            "provider.idle_ttl_minutes", timedelta(minutes=value), limits.IDLE_TTL_RANGE, "e.g. 30"
        )
        return value

    @field_validator("node_placement", "max_node_hours")
    @classmethod
    def _only_for_yellowdog(cls, value: Any, info: Any) -> Any:
        why = {
            "node_placement": ("only for backend yellowdog", "remove it: local nodes always share this host"),
            "max_node_hours": (
                "a spend cap is a YellowDog allowance; local nodes cost nothing",
                "remove it, or use backend yellowdog",
            ),
        }
        if value is not None and info.data.get("backend") != "yellowdog":
            raise SpecError(f"provider.{info.field_name}", *why[info.field_name])
        return value

    @field_validator("disable_node_updaters")
    @classmethod
    def _updaters_off(cls, value: bool) -> bool:
        if not value:
            raise SpecError(
                "provider.disable_node_updaters",
                "must be true: RayDog's backend starts Ray with the node scripts",
                "set disable_node_updaters: true",
            )
        return value

    def ssh_access(self) -> SshAccess:
        """Ray's `auth` names (ssh_private_key is a key *file*) and the provider's SSH keys, as the core's
        one SSH model."""
        values = {
            "user": self.auth.get("ssh_user"),
            "private_key_file": self.auth.get("ssh_private_key"),
            "port": self.ssh_port,
            "known_hosts_file": self.known_hosts_file,
            "host_key_fingerprint": self.host_key_fingerprint,
        }
        return build_model(SshAccess, {k: v for k, v in values.items() if v is not None}, "auth")

    @property
    def lifetime_s(self) -> float:
        return self.cluster_lifetime_hours * 3600

    @property
    def keep_alive(self) -> LeaseState | None:
        """Idle termination of the whole cluster, when asked for: idleness alone, no lease needed."""
        if self.idle_ttl_minutes is None:
            return None
        return LeaseState(
            timeout_s=None, idle_ttl_s=self.idle_ttl_minutes * 60, first_lease_within_s=self.build_timeout_s
        )

    @property
    def build_timeout_s(self) -> float:
        return self.head_node_build_timeout_minutes * 60

    def script(self, role: Literal["head", "worker"]) -> str:
        value = self.ray_head_node_task_script if role == "head" else self.ray_worker_node_task_script
        return value if value is not None else default_script(role)


def parse_provider_config(provider_config: dict[str, Any]) -> ProviderConfig:
    # Ray adds private keys of its own (e.g. `_config_cache_path`).
    values = {k: v for k, v in provider_config.items() if not k.startswith("_")}
    return build_model(ProviderConfig, values, where="provider")


def bootstrap(cluster_config: dict[str, Any], base_dir: Path | None = None) -> dict[str, Any]:
    """Validate and complete a cluster config on the client; see the module docstring."""
    config = copy.deepcopy(cluster_config)
    base = base_dir or config_directory()
    naming.check_name("cluster_name", str(config.get("cluster_name", "")), naming.MAX_CLUSTER_NAME_LENGTH)
    provider = config.setdefault("provider", {})
    unknown = (
        {k for k in provider if not k.startswith("_")} - set(ProviderConfig.model_fields) - RAY_PROVIDER_KEYS
    )
    if unknown:
        raise SpecError(
            f"provider.{sorted(unknown)[0]}", "unknown key", "check its spelling; see docs/autoscaler.md"
        )
    for key in ("ray_head_node_task_script", "ray_worker_node_task_script"):
        if provider.get(key) is not None:
            provider[key] = _inline(provider[key], base, f"provider.{key}")
    provider["files_to_upload"] = [_upload(p, base) for p in provider.get("files_to_upload") or []]
    top_auth = config.get("auth") or {}
    provider["auth"] = {**provider.get("auth", {}), **top_auth}
    if provider.get("known_hosts_file"):
        provider["known_hosts_file"] = str(
            _existing(provider["known_hosts_file"], base, "provider.known_hosts_file")
        )
    _check_commands(config)
    parsed = parse_provider_config(provider)
    provider["node_types"] = _node_types(config, parsed, base)
    parse_provider_config(provider)
    return config


def config_directory() -> Path:
    """The folder of the YAML given to the `ray` CLI (its first existing *.yaml argument), else the CWD.

    Ray passes only the parsed config to a provider, and `file:` references must be relative to the
    YAML, not to wherever `ray up` happens to run.
    """
    for arg in sys.argv[1:]:
        if arg.endswith((".yaml", ".yml")) and Path(arg).is_file():
            return Path(arg).resolve().parent
    return Path.cwd()


def _node_types(config: dict[str, Any], provider: ProviderConfig, base: Path) -> dict[str, Any]:
    types = config.get("available_node_types")
    head_type = config.get("head_node_type")
    if not isinstance(types, dict) or not types:
        raise SpecError("available_node_types", "missing or empty", "list a head node type and worker types")
    if head_type not in types:
        raise SpecError(
            "head_node_type", f"{head_type!r} is not in available_node_types", f"one of {sorted(types)}"
        )
    cluster_name = config["cluster_name"]
    workers = sorted(name for name in types if name != head_type)
    result = {}
    for name, node_type in types.items():
        where = f"available_node_types.{name}"
        if not NODE_TYPE_NAME_PATTERN.fullmatch(str(name)):
            raise SpecError(
                f"available_node_types[{name!r}]",
                "is not a valid node type name",
                "use letters, digits, '.', '_' and '-' (at most 100), e.g. 'ray.worker.cpu'",
            )
        if name == head_type:
            pool_name = cluster_name + naming.HEAD_SUFFIX
        else:
            pool_name = cluster_name + naming.worker_pool_suffix(workers.index(name) + 1)
        resources = _node_resources(node_type.get("resources") or {}, where)
        yellowdog = _yellowdog_options(node_type.get("node_config") or {}, base, f"{where}.node_config")
        if provider.backend == "yellowdog" and not yellowdog.compute_requirement_template_id:
            raise SpecError(
                f"{where}.node_config.compute_requirement_template",
                "required for backend 'yellowdog'",
                "give the id or name of a YellowDog compute requirement template",
            )
        result[name] = NodeTypeConfig(
            pool_name=pool_name, resources=resources, yellowdog=yellowdog
        ).model_dump()
    return result


def _node_resources(resources: dict[str, Any], where: str) -> NodeResources:
    """Ray's `resources` of a node type as the `ray start` flags our scripts pass (nothing auto-detected)."""
    custom = {k: v for k, v in resources.items() if k not in limits.RAY_BUILTIN_RESOURCES}
    # NodeResources checks CPU and GPU counts as they are (2.5 or True is refused, not rounded).
    values: dict[str, Any] = {"num_cpus": resources.get("CPU", 1), "num_gpus": resources.get("GPU", 0)}
    if "memory" in resources:
        values["memory_mb"] = max(_bytes(resources, "memory", where) // MIB, 64)
    if "object_store_memory" in resources:
        values["object_store_mb"] = max(
            _bytes(resources, "object_store_memory", where) // MIB, MIN_OBJECT_STORE_MB
        )
    values["resources"] = custom
    return build_model(NodeResources, values, where=f"{where}.resources")


def _bytes(resources: dict[str, Any], key: str, where: str) -> int:
    value = resources[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise SpecError(
            f"{where}.resources.{key}", f"must be a number of bytes, got {value!r}", "e.g. 4294967296 (4 GiB)"
        )
    return int(value)


def _yellowdog_options(node_config: dict[str, Any], base: Path, where: str) -> YellowDogNodeOptions:
    known = {
        "compute_requirement_template",
        "images_id",
        "userdata",
        "extra_userdata",
        "metrics_enabled",
        "instance_tags",
    }
    unknown = set(node_config) - known
    if unknown:
        raise SpecError(
            f"{where}.{sorted(unknown)[0]}", "unknown key", f"node_config keys are {sorted(known)}"
        )
    userdata = [
        _inline(node_config[key], base, f"{where}.{key}")
        for key in ("userdata", "extra_userdata")
        if node_config.get(key)
    ]
    return build_model(
        YellowDogNodeOptions,
        {
            "compute_requirement_template_id": node_config.get("compute_requirement_template"),
            "images_id": node_config.get("images_id"),
            "userdata": "\n".join(userdata) or None,
            "instance_tags": node_config.get("instance_tags"),
            "metrics_enabled": node_config.get("metrics_enabled"),
        },
        where=where,
    )


def _check_commands(config: dict[str, Any]) -> None:
    for key in (
        "head_start_ray_commands",
        "worker_start_ray_commands",
        "setup_commands",
        "head_setup_commands",
    ):
        for command in config.get(key) or []:
            if _RAY_START_STOP.search(str(command)):
                raise SpecError(
                    key,
                    f"{command!r} starts or stops Ray, but RayDog's node scripts do that",
                    "remove it; change the scripts (provider.ray_*_node_task_script) instead",
                )


def _inline(value: Any, base: Path, field: str) -> str:
    """`file:<path>` (relative to the YAML) becomes the file's text; anything else is inline text."""
    text = str(value)
    if not text.startswith(FILE_PREFIX):
        return text
    return _existing(text[len(FILE_PREFIX) :], base, field).read_text()


def _upload(value: Any, base: Path) -> dict[str, str]:
    """Relative paths keep their relative place under the head's home (as upstream); others their name."""
    if isinstance(value, dict):
        return UploadFile.model_validate(value).model_dump()
    source = _existing(str(value), base, "provider.files_to_upload")
    relative = Path(str(value).removeprefix(FILE_PREFIX))
    target = relative if not relative.is_absolute() and ".." not in relative.parts else Path(source.name)
    return {"source": str(source), "target": str(target)}


def _existing(value: str, base: Path, field: str) -> Path:
    path = Path(str(value).removeprefix(FILE_PREFIX)).expanduser()
    path = path if path.is_absolute() else (base / path)
    if not path.exists():
        raise SpecError(
            field, f"{str(path)!r} does not exist", "paths are relative to the YAML file's folder"
        )
    return path.resolve()
