"""The cluster specification: every input RayDog accepts, validated before any resource exists.

Field names are upstream RayDog's keyword names, so a spec written for `yellowdog-ray` reads the same
here, in YAML for `raydog up`, in a Prefect Block and in an Airflow operator.
"""

from __future__ import annotations

import difflib
import json
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from raydog_core import limits, naming
from raydog_core.errors import SpecError
from raydog_core.runtime_envs import check_runtime_env
from raydog_core.scripts import ScriptSource, check_script

BackendKind = Literal["local", "yellowdog"]
AuthMode = Literal["token", "disabled"]

MIN_OBJECT_STORE_MB = 80  # Ray refuses less than 75 MiB
MAX_SPEC_FILE_BYTES = 1 << 20


class NodePlacement(StrEnum):
    """Where a YellowDog backend's nodes run, chosen by whoever builds the backend, never guessed.

    `own_machine` (the default): every node is a YellowDog instance of its own, so Ray keeps its usual
    ports, nodes' private addresses are not reachable from the client (SSH tunnel through the head), and
    Ray counts a machine's GPUs. `shared_host`: every node is a process on the client's own host (the
    emulator, or an on-premise agent on this machine): nodes get free ports, their own short temp dirs and
    explicit GPU counts, and the client reaches them directly.
    """

    OWN_MACHINE = "own_machine"
    SHARED_HOST = "shared_host"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class NodeResources(_Strict):
    """What one Ray node advertises. Explicit values keep several nodes on one host honest."""

    num_cpus: limits.Count = Field(1, ge=0, le=1024)
    num_gpus: limits.Count | None = Field(
        None, ge=0, le=64, description="None: one GPU per node if the host has any"
    )
    memory_mb: limits.Count = Field(1024, ge=64, le=limits.MAX_MEMORY_MB)
    object_store_mb: limits.Count = Field(128, ge=MIN_OBJECT_STORE_MB, le=limits.MAX_MEMORY_MB)
    resources: dict[str, Annotated[float, limits.NoBool]] = Field(
        default_factory=dict, description="custom Ray resources"
    )

    @field_validator("resources")
    @classmethod
    def _safe_resources(cls, value: dict[str, float]) -> dict[str, float]:
        return limits.check_resource_amounts("resources", value)


class YellowDogNodeOptions(_Strict):
    """How YellowDog provisions the machines of one node role (ignored by the local backend)."""

    compute_requirement_template_id: str | None = None
    images_id: str | None = None
    userdata: str | None = None
    instance_tags: dict[str, str] | None = None
    metrics_enabled: bool | None = None

    @field_validator("instance_tags")
    @classmethod
    def _valid_tags(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return limits.check_labels("instance_tags", value)


class WorkerPoolSpec(_Strict):
    """A pool of identical Ray worker nodes (the arguments of `add_worker_pool`)."""

    worker_pool_node_count: limits.Count = Field(ge=1, le=1000)
    worker_node_task_script: ScriptSource | None = None
    worker_pool_internal_name: str | None = None
    worker_node_compute_requirement_template_id: str | None = None
    worker_node_images_id: str | None = None
    worker_node_userdata: str | None = None
    worker_node_instance_tags: dict[str, str] | None = None
    worker_node_metrics_enabled: bool | None = None
    worker_node_resources: NodeResources = Field(default_factory=NodeResources)

    @field_validator("worker_node_task_script")
    @classmethod
    def _script_exists(cls, value: ScriptSource | None) -> ScriptSource | None:
        return check_script("worker_node_task_script", value)

    @field_validator("worker_pool_internal_name")
    @classmethod
    def _valid_internal_name(cls, value: str | None) -> str | None:
        return None if value is None else naming.check_name("worker_pool_internal_name", value)

    @field_validator("worker_node_instance_tags")
    @classmethod
    def _valid_tags(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return limits.check_labels("worker_node_instance_tags", value)

    @property
    def yellowdog(self) -> YellowDogNodeOptions:
        return yellowdog_options(self, "worker_node")


class ClusterFields(BaseModel):
    """Every field of a cluster, with what it means: the one place they are declared.

    ClusterSpec adds the validation; the Prefect Block `RayDogClusterConfig` shows the same fields (and
    descriptions) in the Prefect UI. Descriptions are sentences: the UI and Prefect's Block checks want them.
    """

    cluster_name: str = Field(description="Name of the cluster (lower-case, starts with a letter).")
    cluster_namespace: str = Field("raydog", description="YellowDog namespace of the cluster's resources.")
    cluster_tag: str | None = Field(None, description="Optional YellowDog tag of the cluster's resources.")
    cluster_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels to find the cluster by later (the Prefect task runner adds the flow-run id).",
    )
    cluster_lifetime: timedelta | None = Field(
        None, description="Nodes stop by themselves after this long, even if nobody shuts them down."
    )
    lease_timeout: timedelta = Field(
        timedelta(minutes=2),
        description="A leased cluster (a with-block, a flow run, a DAG run) ends by itself once its "
        "clients have not renewed their lease for this long.",
    )
    idle_ttl: timedelta | None = Field(
        None,
        description="How long the cluster stays up with no lease and no Ray work before it ends itself; "
        "unset: at once for a leased cluster (10 minutes with a reuse_key), never for an unleased one.",
    )
    reuse_key: str | None = Field(
        None,
        description="Runs with the same reuse_key and the same spec share one warm cluster: a run attaches "
        "to it instead of building, and it ends itself once idle_ttl has passed after its last lease.",
    )
    warm_workers: limits.Count = Field(
        1,
        ge=0,
        le=limits.MAX_WARM_WORKERS,
        description="With a reuse_key: how many Ray worker processes the head starts, bound to no run, "
        "each time a run leaves, for the next run's first tasks (Ray starts a worker per run otherwise); "
        "0: none.",
    )
    worker_preload_modules: list[str] = Field(
        default_factory=list,
        description="Python modules every Ray worker process imports as it starts, before it takes work "
        "(Ray's preload_python_modules): a task on a ready worker skips their import.",
    )
    backend: BackendKind = Field("local", description="Where nodes run: 'local' processes or 'yellowdog'.")
    node_placement: NodePlacement | None = Field(
        None,
        description="Backend 'yellowdog' only: own_machine or shared_host (see NodePlacement); None: "
        "$RAYDOG_YELLOWDOG_NODE_PLACEMENT, else own_machine.",
    )
    build_timeout: timedelta = Field(
        timedelta(minutes=10), description="The head node and workers must be up within this."
    )
    max_node_hours: limits.Count | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Backend 'yellowdog' only: a spend cap in whole node-hours, enforced by the platform "
        "(a hard allowance on this cluster's instances): at the cap it ends them and refuses new ones.",
    )
    max_cost: Annotated[float, limits.NoBool] | None = Field(
        None,
        gt=0,
        le=1e9,
        description="Backend 'yellowdog' only: a spend cap in the platform's price currency, turned into "
        "node-hours at the dearest price of the cluster's templates (see max_node_hours).",
    )

    head_node_allow_spot: bool = Field(
        False,
        description="Backend 'yellowdog' only: let the head run on a template that gives spot instances "
        "(spot or spot-first). Refused by default: a reclaimed head ends the whole cluster.",
    )
    head_node_ray_start_script: ScriptSource | None = Field(
        None, description="Bash script (text or path) starting Ray on the head; default: RayDog's."
    )
    head_node_resources: NodeResources = Field(
        default_factory=NodeResources, description="CPUs, memory and custom resources of the head node."
    )
    head_node_compute_requirement_template_id: str | None = Field(
        None, description="YellowDog compute requirement template of the head node."
    )
    head_node_images_id: str | None = Field(None, description="YellowDog image family of the head node.")
    head_node_userdata: str | None = Field(None, description="YellowDog userdata of the head node.")
    head_node_instance_tags: dict[str, str] | None = Field(
        None, description="Cloud instance tags of the head node."
    )
    head_node_metrics_enabled: bool | None = Field(
        None, description="Whether YellowDog collects metrics of the head node."
    )

    enable_observability: bool = Field(False, description="Start a Prometheus and Grafana node.")
    observability_node_start_script: ScriptSource | None = Field(
        None, description="Bash script (text or path) of the observability node; default: RayDog's."
    )
    observability_node_compute_requirement_template_id: str | None = Field(
        None, description="YellowDog compute requirement template of the observability node."
    )
    observability_node_images_id: str | None = Field(
        None, description="YellowDog image family of the observability node."
    )
    observability_node_userdata: str | None = Field(
        None, description="YellowDog userdata of the observability node."
    )
    observability_node_instance_tags: dict[str, str] | None = Field(
        None, description="Cloud instance tags of the observability node."
    )
    observability_node_metrics_enabled: bool | None = Field(
        None, description="Whether YellowDog collects metrics of the observability node."
    )

    worker_pools: list[WorkerPoolSpec] = Field(
        default_factory=list,
        description="Pools of worker nodes (count, resources, script, YellowDog template).",
    )

    ray_auth_mode: AuthMode = Field("token", description="Ray token authentication on every node.")
    include_dashboard: bool = Field(True, description="Run the Ray dashboard on the head node.")
    gpu_ids: list[int] | None = Field(
        None, description="Local backend: GPUs to hand out to nodes (default: those nvidia-smi finds)."
    )
    runtime_env: dict[str, Any] | None = Field(
        None,
        description="Ray runtime environment (working_dir, py_modules, pip, uv, env_vars, ...) for every Ray "
        "driver RayDog connects to this cluster, so its tasks import the code it ships. It is saved with the "
        "spec: no secrets in env_vars (use a Block or connection secret), local paths must exist.",
    )


class ClusterSpec(ClusterFields, _Strict):
    """A whole cluster: head, optional observability node and worker pools, validated."""

    @field_validator("cluster_name")
    @classmethod
    def _valid_cluster_name(cls, value: str) -> str:
        return naming.check_name("cluster_name", value, naming.MAX_CLUSTER_NAME_LENGTH)

    @field_validator("cluster_namespace")
    @classmethod
    def _valid_namespace(cls, value: str) -> str:
        return naming.check_name("cluster_namespace", value)

    @field_validator("cluster_tag")
    @classmethod
    def _valid_tag(cls, value: str | None) -> str | None:
        return None if value is None else naming.check_name("cluster_tag", value)

    @field_validator("cluster_lifetime", "build_timeout", "lease_timeout", "idle_ttl", mode="before")
    @classmethod
    def _not_bool(cls, value: Any) -> Any:
        return limits.refuse_bool(value)

    @field_validator("cluster_lifetime")
    @classmethod
    def _lifetime(cls, value: timedelta | None) -> timedelta | None:
        return limits.check_lifetime("cluster_lifetime", value)

    @field_validator("lease_timeout")
    @classmethod
    def _lease_timeout(cls, value: timedelta) -> timedelta:
        return limits.check_duration(
            "lease_timeout", value, limits.LEASE_TIMEOUT_RANGE, "e.g. timedelta(minutes=2)"
        )

    @field_validator("idle_ttl")
    @classmethod
    def _idle_ttl(cls, value: timedelta | None) -> timedelta | None:
        if value is None:
            return None
        return limits.check_duration("idle_ttl", value, limits.IDLE_TTL_RANGE, "e.g. timedelta(minutes=10)")

    @field_validator("reuse_key")
    @classmethod
    def _valid_reuse_key(cls, value: str | None) -> str | None:
        return None if value is None else naming.check_name("reuse_key", value, naming.MAX_REUSE_KEY_LENGTH)

    @field_validator("worker_preload_modules")
    @classmethod
    def _valid_module_names(cls, value: list[str]) -> list[str]:
        return limits.check_module_names("worker_preload_modules", value)

    @field_validator("build_timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value.total_seconds() <= 0:
            raise SpecError("build_timeout", f"must be positive, got {value}", "e.g. timedelta(minutes=10)")
        return value

    @field_validator("cluster_labels", "head_node_instance_tags", "observability_node_instance_tags")
    @classmethod
    def _valid_labels(cls, value: dict[str, str] | None, info: Any) -> dict[str, str] | None:
        return limits.check_labels(info.field_name, value)

    @field_validator("gpu_ids", mode="before")
    @classmethod
    def _gpu_ids_not_bool(cls, value: Any) -> Any:
        return [limits.refuse_bool(g) for g in value] if isinstance(value, list) else value

    @field_validator("gpu_ids")
    @classmethod
    def _valid_gpu_ids(cls, value: list[int] | None) -> list[int] | None:
        return limits.check_gpu_ids("gpu_ids", value)

    @field_validator("runtime_env")
    @classmethod
    def _valid_runtime_env(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else check_runtime_env(value)

    @field_validator("head_node_ray_start_script")
    @classmethod
    def _head_script(cls, value: ScriptSource | None) -> ScriptSource | None:
        return check_script("head_node_ray_start_script", value)

    @field_validator("observability_node_start_script")
    @classmethod
    def _obs_script(cls, value: ScriptSource | None) -> ScriptSource | None:
        return check_script("observability_node_start_script", value)

    @model_validator(mode="after")
    def _consistent(self) -> ClusterSpec:
        names = [p.worker_pool_internal_name for p in self.worker_pools if p.worker_pool_internal_name]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise SpecError(
                "worker_pool_internal_name", f"{duplicates} used more than once", "use unique names"
            )
        if len(self.worker_pools) > naming.MAX_WORKER_POOLS:
            raise SpecError("worker_pools", f"at most {naming.MAX_WORKER_POOLS} pools per cluster")
        if self.backend == "yellowdog":
            self._require_templates()
        elif self.max_node_hours is not None or self.max_cost is not None:
            raise SpecError(
                "max_node_hours" if self.max_node_hours is not None else "max_cost",
                f"a spend cap is a YellowDog allowance; backend {self.backend!r} has none (its nodes cost nothing)",
                "remove it, or use backend 'yellowdog'",
            )
        elif self.node_placement is not None:
            raise SpecError(
                "node_placement",
                f"only for backend 'yellowdog', got backend {self.backend!r}",
                "remove node_placement: local nodes always share this host",
            )
        return self

    def _require_templates(self) -> None:
        fix = "give the id (or name) of a YellowDog compute requirement template"
        if not self.head_node_compute_requirement_template_id:
            raise SpecError(
                "head_node_compute_requirement_template_id", "required for backend 'yellowdog'", fix
            )
        if self.enable_observability and not self.observability_node_compute_requirement_template_id:
            raise SpecError(
                "observability_node_compute_requirement_template_id",
                "required when enable_observability is true",
                fix,
            )
        for index, pool in enumerate(self.worker_pools):
            check_pool_for_backend(pool, self.backend, f"worker_pools[{index}]")

    def head_yellowdog(self) -> YellowDogNodeOptions:
        return yellowdog_options(self, "head_node")

    def observability_yellowdog(self) -> YellowDogNodeOptions:
        return yellowdog_options(self, "observability_node")


def yellowdog_options(source: BaseModel, prefix: str) -> YellowDogNodeOptions:
    """The `<prefix>_compute_requirement_template_id`, `<prefix>_images_id`, ... fields of a spec."""
    return YellowDogNodeOptions(
        **{name: getattr(source, f"{prefix}_{name}") for name in YellowDogNodeOptions.model_fields}
    )


def check_pool_for_backend(pool: WorkerPoolSpec, backend: BackendKind, where: str) -> None:
    """Backend-specific requirements of a pool, checked again when a pool is added after build()."""
    if backend == "yellowdog" and not pool.worker_node_compute_requirement_template_id:
        raise SpecError(
            f"{where}.worker_node_compute_requirement_template_id",
            "required for backend 'yellowdog'",
            "give the id (or name) of a YellowDog compute requirement template",
        )


Model = TypeVar("Model", bound=BaseModel)


def build_model(model: type[Model], values: dict[str, Any], where: str = "") -> Model:
    """Validate `values` into `model`, turning pydantic's report into one SpecError naming the field."""
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise spec_error_from(error, where, model) from None


_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
_FIXES = {
    "finite_number": "write a finite number, e.g. 2",
    "int_from_float": "write a whole number, e.g. 2",
    "int_parsing": "write a whole number, e.g. 2",
    "float_parsing": "write a number, e.g. 0.5",
}


def spec_error_from(
    error: ValidationError, where: str = "", model: type[BaseModel] | None = None
) -> SpecError:
    """The first problem of a pydantic ValidationError as a SpecError with a dotted field path."""
    errors = error.errors()
    # An unknown key first: a misspelt field also shows up as a missing or defaulted one.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    cause = first.get("ctx", {}).get("error")
    loc = [str(part) for part in first["loc"]]
    if isinstance(cause, SpecError) and loc and cause.field.startswith(f"{loc[-1]}["):
        loc[-1] = cause.field  # the validator named the part of the field, e.g. "cluster_labels['a b']"
    field = ".".join(loc)
    if not field:
        field = cause.field if isinstance(cause, SpecError) else "spec"
    if where:
        field = f"{where}.{field}"
    if isinstance(cause, SpecError):
        return SpecError(field, cause.problem, cause.fix)
    fix = None
    problem = first["msg"]
    if first["type"] == "extra_forbidden":
        problem = "unknown field"
        fix = "remove it or check its spelling; RayDog uses upstream RayDog's argument names"
        close = difflib.get_close_matches(loc[-1], _field_names_at(model, first["loc"][:-1]), n=1)
        if close:
            fix = f"did you mean {close[0]!r}? {fix}"
    elif first["type"] == "missing":
        fix = "this field is required"
    elif loc[-1].endswith("_mb"):
        fix = f"sizes are in MiB (1024 is 1 GiB), at most {limits.MAX_MEMORY_MB} (64 TiB)"
    elif first["type"] in _BOUNDS:
        bound = next(iter(first.get("ctx", {}).values()), "")
        fix = f"give a number {_BOUNDS[first['type']]} {bound} (see Limits in the README)"
    else:
        fix = _FIXES.get(first["type"])
    if first["type"] not in ("missing", "extra_forbidden") and not isinstance(first.get("input"), dict):
        problem += f" (got {first.get('input')!r})"
    return SpecError(field, problem, fix)


def _field_names_at(model: type[BaseModel] | None, path: tuple[int | str, ...]) -> list[str]:
    """The field names of the (nested) model at `path`, e.g. ('worker_pools', 0) -> WorkerPoolSpec's."""
    for part in path:
        if model is None or isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        model = _model_in(info.annotation) if info else None
    return list(model.model_fields) if model else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model in an annotation such as `list[WorkerPoolSpec]` or `NodeResources | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next(filter(None, map(_model_in, get_args(annotation))), None)


def load_spec_file(path: str | Path) -> ClusterSpec:
    """Read a YAML, TOML or JSON cluster spec; relative script paths resolve against the file's folder."""
    import tomllib

    import yaml

    path = Path(path)
    if not path.is_file():
        raise SpecError("spec", f"file {str(path)!r} does not exist", "pass the path of a YAML or TOML spec")
    if path.stat().st_size > MAX_SPEC_FILE_BYTES:
        raise SpecError("spec", f"{path} is larger than {MAX_SPEC_FILE_BYTES} bytes", "is it a spec?")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader)):
                # Aliases can expand a few lines into billions of values (a "YAML bomb"): a spec needs none.
                raise SpecError("spec", f"{path} uses YAML aliases (*name)", "write the values out in full")
            data = yaml.safe_load(text)
    except SpecError:
        raise
    except Exception as error:  # noqa: BLE001 - any parse error is the user's file, reported as such
        raise SpecError("spec", f"{path} could not be parsed: {error}", "check its syntax") from None
    if not isinstance(data, dict):
        raise SpecError("spec", f"{path} must hold a mapping of field names to values")
    from raydog_core.scripts import resolve_relative_paths

    return build_model(ClusterSpec, resolve_relative_paths(data, path.parent))
