"""Signals while RayDog holds a cluster: one module, one exception type, for every entry point.

By default Python dies on SIGTERM at once, skipping every `finally` and `__exit__`: a `raydog up`, a
`ray up` or a user's program terminated by a CI timeout, `kill` or a container stop would leave its
cluster running until `cluster_lifetime`. While RayDog holds a cluster, a SIGTERM raises `Terminated`
instead, a KeyboardInterrupt, so it takes exactly the Ctrl+C path every caller (Ray's CLI included)
already handles; the clean-up runs, and at the end of a `sigterm_unwinds()` block the process is
terminated by the signal after all, with the exit status a plain SIGTERM gives. This happens only where
nobody else handles SIGTERM (main thread, default action): Prefect, Airflow and Ray install handlers of
their own, and those are left alone.

During a teardown the opposite holds: `signals_deferred()` holds SIGINT and SIGTERM until it is done,
because a teardown interrupted half-way leaves nodes running.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived. A KeyboardInterrupt, so every Ctrl+C path (and no `except Exception`) sees it."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
    raise Terminated(f"terminated by signal {signum}")


def unwind_on_sigterm() -> Callable[[], None] | None:
    """Make SIGTERM raise `Terminated` from now on; returns the function that undoes it, or None where
    this process's SIGTERM is not ours to change (another thread, or someone else's handler)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        return None
    signal.signal(signal.SIGTERM, _raise_terminated)

    def undo() -> None:
        """Back to the default action; only the main thread may (from another, the handler stays)."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) in (_raise_terminated, signal.SIG_IGN):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # unless someone (ray.init) has set their own

    return undo


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """See the module docstring; nested or foreign-handled uses do nothing."""
    undo = unwind_on_sigterm()
    if undo is None:
        yield
        return
    try:
        yield
    except Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
        raise  # only if the signal is blocked
    finally:
        undo()


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends, then deliver the first one that arrived.

    Only the main thread can set signal handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous: dict[signal.Signals, Any] = {}
    for number in DEFERRED_SIGNALS:
        handler = signal.getsignal(number)
        if handler is None:  # installed outside Python: leave it alone
            continue
        previous[number] = handler
        signal.signal(number, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if received:
            signal.raise_signal(received[0])
