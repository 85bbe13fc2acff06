"""GPU assignment rules, unit-tested so they hold on machines without GPUs."""

from __future__ import annotations

import pytest

from raydog_core.backends.local.gpus import assign_gpus, detect_gpu_ids
from raydog_core.errors import SpecError


def test_one_gpu_each_in_order_when_the_machine_has_gpus() -> None:
    assert assign_gpus([0, 1, 2], [None, None, None], [0, 1, 2], "f") == [[0], [1], [2]]


def test_cpu_only_without_gpus() -> None:
    assert assign_gpus([], [None, None], [], "f") == [[], []]


def test_explicit_counts_and_zero() -> None:
    assert assign_gpus([0, 1, 2, 3], [2, 0, 1], [0, 1, 2, 3], "f") == [[0, 1], [], [2]]


def test_continues_after_gpus_already_taken() -> None:
    assert assign_gpus([2, 3], [None], [0, 1, 2, 3], "f") == [[2]]


def test_more_gpu_nodes_than_gpus_fails_clearly() -> None:
    with pytest.raises(SpecError) as caught:
        assign_gpus([0, 1], [None, None, None], [0, 1], "num_gpus")
    assert caught.value.field == "num_gpus"
    assert "3 node(s) need 3 GPU(s) but only 2" in str(caught.value)


def test_detection_honours_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert detect_gpu_ids() == [3, 5]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert detect_gpu_ids() == []
