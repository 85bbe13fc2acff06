"""The REST surface: each route maps a method and path of the real API to a Platform operation.

Paths are matched after collapsing repeated slashes (the SDK sends `//` in two places) and dropping a
trailing slash. Query values are lists, as the SDK repeats keys for lists.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from raydog_core.testing.emulator import wire
from raydog_core.testing.emulator.platform import Platform

Query = dict[str, list[str]]


@dataclass
class Request:
    params: dict[str, str]
    query: Query
    body: Any


@dataclass(frozen=True)
class Stream:
    """A route answers with a server-sent event stream of this entity."""

    render: Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Text:
    text: str


Handler = Callable[[Platform, Request], Any]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    handler: Handler


ROUTES: list[Route] = []
SEGMENT = r"(?P<{}>[^/]+)"


def route(method: str, template: str) -> Callable[[Handler], Handler]:
    regex = re.sub(r"\{(\w+)\}", lambda m: SEGMENT.format(m.group(1)), template)

    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(method, re.compile(f"^{regex}$"), f"{method} {template}", handler))
        return handler

    return register


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    path = re.sub(r"/+", "/", path).rstrip("/") or "/"
    for candidate in ROUTES:
        if candidate.method != method:
            continue
        found = candidate.pattern.match(path)
        if found:
            return candidate, {k: unquote(v) for k, v in found.groupdict().items()}
    return None


def page(items: list[Any], query: Query, page_size: int) -> dict[str, Any]:
    """One slice; `nextSliceId` only when more follow (the SDK's paginate() loops while it is present)."""
    start = int(_first(query, "sliceId") or 0)
    size = min(int(_first(query, "size") or page_size), page_size)
    chunk = items[start : start + size]
    result: dict[str, Any] = {"items": chunk}
    if start + size < len(items):
        result["nextSliceId"] = str(start + size)
    return result


def flag(query: Query, key: str) -> bool:
    return (_first(query, key) or "").lower() == "true"


def _first(query: Query, key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None


PAGE_SIZE = 100  # the emulator's largest slice; tests lower it to exercise pagination


# -- work ---------------------------------------------------------------------------------------------


@route("POST", "/work/requirements")
def add_requirement(p: Platform, r: Request) -> Any:
    return p.add_requirement(r.body).to_json()


@route("PUT", "/work/requirements")
def update_requirement(p: Platform, r: Request) -> Any:
    return p.update_requirement(r.body).to_json()


@route("GET", "/work/requirements")
def search_requirements(p: Platform, r: Request) -> Any:
    return page([w.summary_json() for w in p.search_requirements(r.query)], r.query, PAGE_SIZE)


@route("GET", "/work/requirements/{id}")
def get_requirement(p: Platform, r: Request) -> Any:
    with p.lock:
        return p.requirement(r.params["id"]).to_json()


@route("GET", "/work/namespaces/{ns}/requirements/{name}")
def get_requirement_by_name(p: Platform, r: Request) -> Any:
    with p.lock:
        return p.requirement_by_name(r.params["ns"], r.params["name"]).to_json()


@route("PUT", "/work/requirements/{id}/transition/{status}")
def transition_requirement(p: Platform, r: Request) -> Any:
    requirement = p.transition_requirement(r.params["id"], r.params["status"], flag(r.query, "abort"))
    with p.lock:
        return requirement.to_json()


@route("GET", "/work/requirements/{id}/updates")
def requirement_updates(p: Platform, r: Request) -> Any:
    requirement = p.requirement(r.params["id"])
    return Stream(lambda: _locked(p, requirement.to_json))


@route("POST", "/work/taskGroups/{id}/tasks")
def add_tasks(p: Platform, r: Request) -> Any:
    tasks = p.add_tasks(r.params["id"], _list(r.body))
    with p.lock:
        return [t.to_json() for t in tasks]


@route("POST", "/work/namespaces/{ns}/requirements/{wr}/taskGroups/{tg}/tasks")
def add_tasks_by_name(p: Platform, r: Request) -> Any:
    tasks = p.add_tasks_by_name(r.params["ns"], r.params["wr"], r.params["tg"], _list(r.body))
    with p.lock:
        return [t.to_json() for t in tasks]


@route("GET", "/work/tasks")
def search_tasks(p: Platform, r: Request) -> Any:
    with p.lock:
        return page([t.to_json() for t in p.search_tasks(r.query)], r.query, PAGE_SIZE)


@route("GET", "/work/tasks/{id}")
def get_task(p: Platform, r: Request) -> Any:
    with p.lock:
        return p.task(r.params["id"]).to_json()


@route("PUT", "/work/tasks/{id}/cancel")
def cancel_task(p: Platform, r: Request) -> Any:
    task = p.cancel_task(r.params["id"], flag(r.query, "abort"))
    with p.lock:
        return task.to_json()


# -- worker pools and nodes ---------------------------------------------------------------------------


@route("POST", "/workerPools/provisioned/template")
def provision_pool(p: Platform, r: Request) -> Any:
    return _pool_json(p, p.provision_pool(r.body))


@route("PUT", "/workerPools/provisioned/{id}")
def resize_pool(p: Platform, r: Request) -> Any:
    return _pool_json(p, p.resize_pool(r.params["id"], int(_first(r.query, "size") or 0)))


@route("GET", "/workerPools")
def search_pools(p: Platform, r: Request) -> Any:
    with p.lock:
        return page([w.summary_json() for w in p.search_pools(r.query)], r.query, PAGE_SIZE)


@route("GET", "/workerPools/nodes")
def search_nodes(p: Platform, r: Request) -> Any:
    with p.lock:
        return page([i.node_json() for i in p.search_nodes(r.query)], r.query, PAGE_SIZE)


@route("GET", "/workerPools/nodes/{id}")
def get_node(p: Platform, r: Request) -> Any:
    with p.lock:
        return p.instance_by_node(r.params["id"]).node_json()


@route("DELETE", "/workerPools/nodes/{id}")
def shutdown_node(p: Platform, r: Request) -> Any:
    instance = p.shutdown_node(r.params["id"])
    with p.lock:
        return instance.node_json()


@route("GET", "/workerPools/workers/{id}/node")
def get_node_by_worker(p: Platform, r: Request) -> Any:
    with p.lock:
        return p.instance_by_worker(r.params["id"]).node_json()


@route("GET", "/workerPools/{id}/updates")
def pool_updates(p: Platform, r: Request) -> Any:
    pool = p.pool(r.params["id"])
    return Stream(lambda: _locked(p, pool.to_json))


@route("GET", "/workerPools/{id}")
def get_pool(p: Platform, r: Request) -> Any:
    return _pool_json(p, p.pool(r.params["id"]))


@route("GET", "/workerPools/{ns}/{name}")
def get_pool_by_name(p: Platform, r: Request) -> Any:
    return _pool_json(p, p.pool_by_name(r.params["ns"], r.params["name"]))


@route("DELETE", "/workerPools/{id}")
def shutdown_pool(p: Platform, r: Request) -> Any:
    p.shutdown_pool(r.params["id"])
    return None


# -- compute ------------------------------------------------------------------------------------------


@route("GET", "/compute/requirements")
def search_computes(p: Platform, r: Request) -> Any:
    with p.lock:
        found = p.search_computes(r.query)
        items = [c.summary_json() if flag(r.query, "summaries") else c.to_json() for c in found]
    return page(items, r.query, PAGE_SIZE)


@route("GET", "/compute/requirements/{id}")
def get_compute(p: Platform, r: Request) -> Any:
    with p.lock:
        return p.compute(r.params["id"]).to_json()


@route("GET", "/compute/namespaces/{ns}/requirements/{name}")
def get_compute_by_name(p: Platform, r: Request) -> Any:
    with p.lock:
        return p.compute_by_name(r.params["ns"], r.params["name"]).to_json()


@route("PUT", "/compute/requirements/{id}/transition/{status}")
def transition_compute(p: Platform, r: Request) -> Any:
    compute = p.transition_compute(r.params["id"], r.params["status"])
    with p.lock:
        return compute.to_json()


@route("GET", "/compute/requirements/{id}/updating")
def compute_updating(p: Platform, r: Request) -> Any:
    p.compute(r.params["id"])
    return False


@route("PUT", "/compute/requirements/{id}/instances/transition/{status}")
def transition_instances(p: Platform, r: Request) -> Any:
    if r.params["status"] != "TERMINATED":
        raise wire.invalid("The emulator only supports terminating instances")
    p.terminate_instances(r.params["id"], [i.get("instanceId") for i in _list(r.body)])
    return None


@route("PUT", "/compute/requirements/{id}/instances/deprovision")
def deprovision_instances(p: Platform, r: Request) -> Any:
    p.terminate_instances(r.params["id"], [i.get("instanceId") for i in _list(r.body)])
    return None


@route("PUT", "/compute/requirements/{id}/autoShutdown")
def compute_auto_shutdown(p: Platform, r: Request) -> Any:
    with p.lock:
        return p.compute(r.params["id"]).to_json()


@route("GET", "/compute/requirements/{id}/updates")
def compute_updates(p: Platform, r: Request) -> Any:
    compute = p.compute(r.params["id"])
    return Stream(lambda: _locked(p, compute.to_json))


@route("GET", "/compute/instances")
def search_instances(p: Platform, r: Request) -> Any:
    with p.lock:
        return page([i.to_json() for i in p.search_instances(r.query)], r.query, PAGE_SIZE)


@route("GET", "/compute/templates/requirements")
def list_templates(p: Platform, r: Request) -> Any:
    with p.lock:
        items = [t.summary_json() for t in p.templates.values()]
    return page(items, r.query, PAGE_SIZE) if flag(r.query, "sliced") else items


@route("GET", "/compute/templates/requirements/{id}")
def get_template(p: Platform, r: Request) -> Any:
    return p.template(r.params["id"]).to_json()


@route("GET", "/compute/namespaces/{ns}/templates/requirements/{name}")
def get_template_by_name(p: Platform, r: Request) -> Any:
    return p.template(f"{r.params['ns']}/{r.params['name']}").to_json()


@route("GET", "/compute/templates/sources")
def list_source_templates(p: Platform, r: Request) -> Any:
    with p.lock:
        items = [s.summary_json() for s in p.source_templates.values()]
    return page(items, r.query, PAGE_SIZE) if flag(r.query, "sliced") else items


@route("GET", "/compute/templates/sources/{id}")
def get_source_template(p: Platform, r: Request) -> Any:
    return p.source_template(r.params["id"]).to_json()


@route("GET", "/compute/namespaces/{ns}/templates/sources/{name}")
def get_source_template_by_name(p: Platform, r: Request) -> Any:
    return p.source_template(f"{r.params['ns']}/{r.params['name']}").to_json()


# -- cloud info and allowances ------------------------------------------------------------------------


@route("GET", "/cloudInfo/instanceTypePrices")
def search_prices(p: Platform, r: Request) -> Any:
    return page([price.to_json() for price in p.search_prices(r.query)], r.query, PAGE_SIZE)


@route("POST", "/allowances")
def add_allowance(p: Platform, r: Request) -> Any:
    return p.allowance_json(p.add_allowance(r.body))


@route("GET", "/allowances")
def search_allowances(p: Platform, r: Request) -> Any:
    return page([p.allowance_json(a) for a in p.search_allowances(r.query)], r.query, PAGE_SIZE)


@route("PUT", "/allowances/requirement")
def check_exhaustion(p: Platform, r: Request) -> Any:
    body = r.body if isinstance(r.body, dict) else {}
    with p.lock:
        compute = p.computes.get(body.get("id") or "")
    if compute is None:
        raise wire.invalid("the request body must be a compute requirement the platform knows (with its id)")
    return [
        {
            "allowanceId": allowance.id,
            "allowanceDescription": allowance.spec.get("description"),
            "exhaustedSourceIds": [compute.source_id],
        }
        for allowance in p.exhausted_allowances(compute)
    ]


@route("GET", "/allowances/{id}")
def get_allowance(p: Platform, r: Request) -> Any:
    with p.lock:
        return p.allowance_json(p.allowance(r.params["id"]))


@route("DELETE", "/allowances/{id}")
def delete_allowance(p: Platform, r: Request) -> Any:
    p.delete_allowance(r.params["id"])
    return None


@route("POST", "/allowances/{id}/boost/{hours}")
def boost_allowance(p: Platform, r: Request) -> Any:
    try:
        hours = int(r.params["hours"])
    except ValueError:
        raise wire.invalid(f"{r.params['hours']!r} is not a whole number of hours") from None
    return p.allowance_json(p.boost_allowance(r.params["id"], hours))


# -- namespaces ---------------------------------------------------------------------------------------


@route("GET", "/namespaces")
def search_namespaces(p: Platform, r: Request) -> Any:
    with p.lock:
        items = [{"id": i, "namespace": n, "deletable": True} for n, i in p.namespaces.items()]
    return page(items, r.query, PAGE_SIZE)


@route("POST", "/namespaces")
def add_namespace(p: Platform, r: Request) -> Any:
    with p.lock:
        return Text(p.namespace_id((r.body or {}).get("namespace") or "default"))


@route("GET", "/namespaces/{id}")
def get_namespace(p: Platform, r: Request) -> Any:
    with p.lock:
        for name, namespace_id in p.namespaces.items():
            if r.params["id"] in (namespace_id, name):
                return {"id": namespace_id, "namespace": name, "deletable": True}
    raise wire.not_found("Namespace", r.params["id"])


@route("DELETE", "/namespaces/{id}")
def delete_namespace(p: Platform, r: Request) -> Any:
    with p.lock:
        for name, namespace_id in list(p.namespaces.items()):
            if namespace_id == r.params["id"]:
                del p.namespaces[name]
    return None


def _pool_json(p: Platform, pool: Any) -> dict[str, Any]:
    with p.lock:
        return pool.to_json()


def _locked(p: Platform, render: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    with p.lock:
        return render()


def _list(body: Any) -> list[Any]:
    if not isinstance(body, list):
        raise wire.invalid("the request body must be a JSON list")
    return body
