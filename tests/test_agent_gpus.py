"""GPU figures: NVML's answers (a stand-in for NVIDIA's `pynvml` bindings, since the
test machine has no driver) turned into per-GPU figures, a GPU NVML fails to read left
out, and the `--vram-mb` budget for GPUs NVML cannot see."""

from __future__ import annotations

import types
from dataclasses import dataclass

import pynvml

from stablequeue_agent.gpus import Gpu, Gpus, load_nvml

MB = 2**20


@dataclass
class Memory:
    total: int
    free: int
    used: int


def fake_nvml(devices: list[dict[str, object]]) -> types.ModuleType:
    """A module with the pynvml functions the agent uses, answering from `devices`."""
    nvml = types.ModuleType("pynvml")
    nvml.NVMLError = pynvml.NVMLError  # type: ignore[attr-defined]

    def device(index: int) -> dict[str, object]:
        found = devices[index]
        if found.get("broken"):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return found

    nvml.nvmlDeviceGetCount = lambda: len(devices)  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetName = lambda i: device(i)["name"]  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetMemoryInfo = lambda i: Memory(  # type: ignore[attr-defined]
        int(device(i)["total"]) * MB, int(device(i)["free"]) * MB, 0
    )

    def utilization(i: int) -> types.SimpleNamespace:
        if "util" not in device(i):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return types.SimpleNamespace(gpu=device(i)["util"], memory=0)

    nvml.nvmlDeviceGetUtilizationRates = utilization  # type: ignore[attr-defined]
    nvml.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    return nvml


def test_nvml_figures_per_gpu() -> None:
    gpus = Gpus(fake_nvml([
        {"name": "NVIDIA GeForce RTX 4090", "total": 24564, "free": 20000, "util": 37},
        {"name": b"Tesla T4", "total": 15360, "free": 15000},  # old bindings: bytes, no util
        {"name": "lost", "total": 1, "free": 1, "broken": True},
    ]))  # fmt: skip
    assert gpus.read() == [
        Gpu(0, "NVIDIA GeForce RTX 4090", 24564, 20000, 37),
        Gpu(1, "Tesla T4", 15360, 15000, -1),
    ]
    assert gpus.free_vram_mb() == 20000  # a model runs on one GPU: the freest one
    gpus.close()


def test_no_nvml_means_no_figures_and_no_eviction() -> None:
    assert Gpus(None).read() == [] and Gpus(None).free_vram_mb() is None
    assert Gpus(fake_nvml([])).free_vram_mb() is None


def test_a_budget_counts_the_models_running() -> None:
    reserved = [0]
    gpus = Gpus(None, budget_mb=8000, reserved_mb=lambda: reserved[0])
    assert gpus.free_vram_mb() == 8000
    reserved[0] = 6000
    assert gpus.read() == [Gpu(0, "GPU (budget from --vram-mb)", 8000, 2000)]
    reserved[0] = 9000
    assert gpus.free_vram_mb() == 0


def test_load_nvml_is_none_without_the_driver() -> None:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        assert load_nvml() is None  # this machine has no NVIDIA driver
    else:  # a GPU machine: the real bindings answer
        pynvml.nvmlShutdown()
        nvml = load_nvml()
        assert nvml is not None and Gpus(nvml).read()
