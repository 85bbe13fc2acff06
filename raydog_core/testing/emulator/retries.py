"""A task group's retry policy, as the platform applies it to a failed attempt of one of its tasks.

`runSpecification.retryPolicy` is `{maxRetries, retryErrors}`, where `retryErrors` is a Selection of
TaskErrorSelectors (`errorTypes`, `statusesAtFailure`, `processExitCodes`, each itself a Selection) and
only the latest attempt's error is judged. The deprecated `maximumTaskRetries` / `retryableErrors` pair
is honoured the same way when no `retryPolicy` is given.
"""

from __future__ import annotations

from typing import Any


def retries_left(run: dict[str, Any], retry_count: int, error: dict[str, Any]) -> bool:
    """Does the platform start this task again after `error`, its `retry_count`-th retry so far?"""
    policy = run.get("retryPolicy")
    if policy is not None:
        if retry_count >= int(policy.get("maxRetries") or 0):
            return False
        selection = policy.get("retryErrors")
        return selection is None or _selected(selection, error, _error_matches)
    if retry_count >= int(run.get("maximumTaskRetries") or 0):
        return False
    matchers = run.get("retryableErrors")
    return not matchers or any(_legacy_matches(m, error) for m in matchers)


def _selected(selection: dict[str, Any], item: Any, matches: Any) -> bool:
    """The SDK's Selection: includes (less excludes) if any includes are given, else 'not excluded';
    an empty selection matches nothing."""
    includes = selection.get("includes") or []
    excludes = selection.get("excludes") or []
    if includes:
        return any(matches(i, item) for i in includes) and not any(matches(e, item) for e in excludes)
    return bool(excludes) and not any(matches(e, item) for e in excludes)


def _equal(expected: Any, actual: Any) -> bool:
    return expected == actual


def _fields(error: dict[str, Any]) -> dict[str, Any]:
    """The error's values under the names selectors and matchers give them."""
    return {
        "errorTypes": error.get("errorType"),
        "statusesAtFailure": error.get("statusAtFailure"),
        "processExitCodes": error.get("processExitCode"),
    }


def _error_matches(selector: dict[str, Any], error: dict[str, Any]) -> bool:
    """A TaskErrorSelector ANDs the selections it gives."""
    given = [(key, value) for key, value in _fields(error).items() if selector.get(key) is not None]
    return bool(given) and all(_selected(selector[key], value, _equal) for key, value in given)


def _legacy_matches(matcher: dict[str, Any], error: dict[str, Any]) -> bool:
    return all(value in matcher[key] for key, value in _fields(error).items() if matcher.get(key))
