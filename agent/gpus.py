"""The node's GPUs and free VRAM, from NVML when the node has NVIDIA's driver.

A node without NVML (no GPU, or AMD/Intel/Apple GPUs that stable-diffusion.cpp runs
on through Vulkan, ROCm or Metal) reports no GPU figures, unless it is given a VRAM
budget (`sq-agent --vram-mb`): free VRAM is then the budget minus the `vram_mb` of
the models running. Without either, VRAM-based eviction is off.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

log = logging.getLogger(__name__)
MB = 2**20


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    total_mb: int
    free_mb: int
    utilization: int = -1  # percent; -1 unknown


def load_nvml() -> ModuleType | None:
    """The initialised `pynvml` module, or None when NVML is not usable here."""
    try:
        import pynvml
    except ImportError:
        log.info("nvidia-ml-py is not installed: no GPU figures")
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        log.info("no NVIDIA GPU figures on this node (NVML: %s)", e)
        return None
    return pynvml


class Gpus:
    """Args:
    nvml: an initialised pynvml module (see `load_nvml`), or None.
    budget_mb: the VRAM to account against when NVML cannot read the GPU (0: none).
    reserved_mb: the VRAM the running models claim (for the budget).
    """

    def __init__(
        self,
        nvml: ModuleType | None,
        budget_mb: int = 0,
        reserved_mb: Callable[[], int] = lambda: 0,
    ) -> None:
        self._nvml = nvml
        self._budget = budget_mb
        self._reserved = reserved_mb

    def read(self) -> list[Gpu]:
        """Every GPU's figures now (a GPU NVML fails to read is left out)."""
        if self._budget:
            free = max(0, self._budget - self._reserved())
            return [Gpu(0, "GPU (budget from --vram-mb)", self._budget, free)]
        if self._nvml is None:
            return []
        nvml = self._nvml
        gpus = []
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as e:
            log.warning("NVML could not count the GPUs: %s", e)
            return []
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                name = nvml.nvmlDeviceGetName(handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                utilization = -1
                with contextlib.suppress(nvml.NVMLError):
                    utilization = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except nvml.NVMLError as e:
                log.warning("NVML could not read GPU %d: %s", index, e)
                continue
            if isinstance(name, bytes):  # older bindings return bytes
                name = name.decode(errors="replace")
            gpus.append(Gpu(index, name, memory.total // MB, memory.free // MB, utilization))
        return gpus

    def free_vram_mb(self) -> int | None:
        """VRAM a model can still get: the freest GPU's (a model runs on one GPU);
        None when nothing is known (eviction is then off)."""
        gpus = self.read()
        return max(g.free_mb for g in gpus) if gpus else None

    def close(self) -> None:
        if self._nvml is not None:
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()
