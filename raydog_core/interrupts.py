"""SIGTERM unwinds like Ctrl+C while RayDog holds a cluster, so the clean-up still runs.

By default Python dies on SIGTERM at once, skipping every `finally` and `__exit__`: a `raydog up` or a
user's program terminated by a CI timeout, `kill` or a container stop would leave its cluster running
until `cluster_lifetime`. Inside `sigterm_unwinds()` a SIGTERM raises `Terminated` instead, the
clean-up runs, and at the end of the block the process is terminated by the signal after all, with the
exit status a plain SIGTERM gives. Only where nobody else handles SIGTERM (main thread, default
action): Prefect, Airflow and Ray install handlers of their own, and those are left alone.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(BaseException):
    """SIGTERM arrived; a BaseException, like KeyboardInterrupt, so `except Exception` does not eat it."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
    raise Terminated(f"terminated by signal {signum}")


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """See the module docstring; nested or foreign-handled uses do nothing."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    except Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
        raise  # only if the signal is blocked
    finally:
        if signal.getsignal(signal.SIGTERM) in (_raise_terminated, signal.SIG_IGN):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # unless someone (ray.init) has set their own
