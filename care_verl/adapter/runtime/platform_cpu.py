"""A ``cpu`` platform for verl 0.9.1, so its trainer runs on machines without an accelerator.

verl 0.9.1 ships only cuda/npu/rocm platforms and falls back to ``nvidia`` when it detects none
(``verl/plugin/platform/platform_manager.py:_detect_platform_name``), which makes it pick the
``nccl`` backend and CUDA device calls. This platform answers with ``cpu`` + ``gloo`` and no-op
memory/profiling calls. It is registered *after* the built-in platforms, so auto-detection only
reaches it when no accelerator answers; ``VERL_PLATFORM=cpu`` forces it.
"""

from __future__ import annotations

import contextlib
import types
from typing import Any, Optional

import torch

from verl.plugin.platform.platform_base import PlatformBase


def _noop(*_args, **_kwargs):
    return None


def _zero(*_args, **_kwargs):
    return 0


class _CpuDeviceModule(types.SimpleNamespace):
    """Stands in for ``torch.cuda`` where verl calls ``get_torch_device().<fn>()``.

    Memory queries report 0 (verl only logs them); RNG calls go to the CPU generator.
    Anything not listed falls through to ``torch.cpu`` so a missing name fails loudly.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(torch.cpu, name)


def _mem_get_info(*_args, **_kwargs):
    import psutil

    vm = psutil.virtual_memory()
    return vm.available, vm.total


CPU_DEVICE_MODULE = _CpuDeviceModule(
    is_available=lambda: True,
    device_count=lambda: 1,
    current_device=lambda: 0,
    set_device=_noop,
    synchronize=_noop,
    empty_cache=_noop,
    memory_allocated=_zero,
    memory_reserved=_zero,
    max_memory_allocated=_zero,
    max_memory_reserved=_zero,
    reset_peak_memory_stats=_noop,
    reset_max_memory_allocated=_noop,
    mem_get_info=_mem_get_info,
    manual_seed=torch.manual_seed,
    manual_seed_all=torch.manual_seed,
    get_rng_state=torch.get_rng_state,
    set_rng_state=torch.set_rng_state,
    is_initialized=lambda: True,
    ipc_collect=_noop,
    set_per_process_memory_fraction=_noop,
    get_device_name=lambda *_a, **_k: "cpu",
)


class PlatformCPU(PlatformBase):
    """verl platform for CPU-only processes: device ``cpu``, collectives over ``gloo``."""

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> types.ModuleType:
        return CPU_DEVICE_MODULE  # type: ignore[return-value]

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # Only reached after cuda/npu/rocm said no (registration order), so CPU is the answer.
        return True

    def current_device(self):  # type: ignore[override]
        # verl passes get_device_id() to `.to()` and FSDP's device_id; an int would mean
        # "accelerator 0" (verl/utils/fsdp_utils.py), so answer with the CPU device itself.
        return torch.device("cpu")

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: Optional[int] = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0):
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        # Nothing to restrict on CPU; a name no runtime reads keeps verl's bookkeeping harmless.
        return "CARE_VERL_CPU_VISIBLE_DEVICES"

    @contextlib.contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        # verl's resource pools always ask Ray for "GPU" bundles
        # (verl/single_controller/ray/base.py:210,240); on CPU the launcher declares logical GPUs
        # (ray_init.num_gpus) so those bundles can be placed.
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None
