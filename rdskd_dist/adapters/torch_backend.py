"""Ray Train's torch backend, set up on CPU workers without importing torch in the Train controller.

Ray's `TorchConfig` lives in a module that imports torch, and the controller (a new process per run) unpickles
it with its callbacks: about 2 s of CPU per trial spent importing a library the controller never uses, since the
process group is made on the workers. `LeanTorchConfig` carries the same options from a torch-free module. On
CPU workers with gloo and `env://` (the only setup this project makes on CPU) the controller only finds rank 0's
address and asks each worker to join the group, by Ray's own worker-side functions, imported on the worker;
any other setup (GPUs, TPUs, another backend or init method) is handed to Ray's backend unchanged.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Optional

import ray
from ray.train._internal.utils import get_address_and_port
from ray.train.backend import Backend, BackendConfig

# Ray's names for the shutdown timeout (ray.train.constants, which imports no torch)
SHUTDOWN_TIMEOUT_ENV, DEFAULT_SHUTDOWN_TIMEOUT_S = "TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S", 30


@dataclass
class LeanTorchConfig(BackendConfig):
    """Ray's `TorchConfig` options (same names and defaults), in a module the controller can load without torch."""

    backend: Optional[str] = None
    init_method: str = "env"
    timeout_s: int = 1800

    @property
    def backend_cls(self):
        return LeanTorchBackend

    @property
    def train_func_context(self):  # evaluated where the trainer is built and on the workers: torch is there
        from ray.train.torch.config import TorchConfigContextManager
        return TorchConfigContextManager

    @property
    def framework(self):
        from ray.train.v2._internal.util import TrainingFramework
        return TrainingFramework.TORCH

    def to_ray_config(self):
        from ray.train.torch import TorchConfig
        return TorchConfig(backend=self.backend, init_method=self.init_method, timeout_s=self.timeout_s)


def _join_process_group(master_addr: str, master_port: int, rank: int, world_size: int, timeout_s: int) -> None:
    """On a worker: the environment and process group that Ray's torch backend gives a gloo worker."""
    from ray.train.torch.config import _set_torch_distributed_env_vars, _setup_torch_process_group

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = master_addr, str(master_port)
    _set_torch_distributed_env_vars()
    _setup_torch_process_group(backend="gloo", world_rank=rank, world_size=world_size, init_method="env://",
                               timeout_s=timeout_s)


def _leave_process_group(destroy: bool) -> None:
    from ray.train.torch.config import _shutdown_torch
    _shutdown_torch(destroy_process_group=destroy)


class LeanTorchBackend(Backend):
    share_cuda_visible_devices: bool = True

    def __init__(self):
        self._ray_backend: Optional[Backend] = None  # Ray's own, for every setup but CPU + gloo + env://

    @staticmethod
    def _is_cpu_gloo(worker_group, config: LeanTorchConfig) -> bool:
        resources = worker_group.get_resources_per_worker()
        return (config.backend in (None, "gloo") and config.init_method == "env"
                and not resources.get("GPU", 0) and not resources.get("TPU", 0))

    def on_start(self, worker_group, backend_config: LeanTorchConfig) -> None:
        if not self._is_cpu_gloo(worker_group, backend_config):
            from ray.train.torch.config import _TorchBackend
            self._ray_backend = _TorchBackend()
            self._ray_backend.on_start(worker_group, backend_config.to_ray_config())
            return
        addr, port = worker_group.execute_single(0, get_address_and_port)
        size = len(worker_group)
        ray.get([worker_group.execute_single_async(rank, _join_process_group, addr, port, rank, size,
                                                   backend_config.timeout_s) for rank in range(size)])

    def on_training_start(self, worker_group, backend_config: LeanTorchConfig) -> None:
        if self._ray_backend is not None:
            self._ray_backend.on_training_start(worker_group, backend_config.to_ray_config())

    def on_shutdown(self, worker_group, backend_config: LeanTorchConfig) -> None:
        if self._ray_backend is not None:
            self._ray_backend.on_shutdown(worker_group, backend_config.to_ray_config())
            return
        timeout_s = int(os.environ.get(SHUTDOWN_TIMEOUT_ENV, DEFAULT_SHUTDOWN_TIMEOUT_S))
        futures = worker_group.execute_async(_leave_process_group, len(worker_group) > 1)
        ready, _ = ray.wait(futures, num_returns=len(futures), timeout=timeout_s)
        if len(ready) < len(futures):
            logging.getLogger(__name__).warning("torch process group shutdown timed out after %s s", timeout_s)
