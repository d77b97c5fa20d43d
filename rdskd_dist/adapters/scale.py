"""Where and how wide a distillation runs: the options of `python -m rdskd_dist.train` beyond DistillConfig.

Its own light module (pydantic only, no torch or ray), so that the CLI validates its options and
reports a bad one in a fraction of a second.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rdskd_dist.adapters.ray_connect import parse_ray_address
from rdskd_dist.errors import UserError


class WorkerResources(BaseModel):
    """How many Ray Train workers and what each reserves: the one resource model of a single run
    (`ScaleConfig`) and of a sweep's trials (`tune.spec.TrialResources`)."""

    model_config = ConfigDict(extra="forbid")

    workers: int = Field(0, ge=0, description="Ray Train workers (0: run in this process, without Ray)")
    gpus_per_worker: float = Field(0.0, ge=0, description="GPUs per Ray worker (fractions allowed; 0: CPU workers)")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs per Ray worker; CPU workers use that many torch threads")

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0

    def per_worker(self) -> dict[str, float]:
        """The Ray resources one worker reserves (Ray Train's `resources_per_worker`)."""
        return {"CPU": self.cpus_per_worker, **({"GPU": self.gpus_per_worker} if self.use_gpu else {})}


class ScaleConfig(WorkerResources):
    """Where and how wide a distillation runs on Ray Train (the budget and the method live in DistillConfig)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    storage: Optional[str] = Field(None, description="Ray run storage: a local folder or any pyarrow filesystem URI "
                                                     "(s3://, gs://, ...); unset: ./runs")
    max_failures: int = Field(0, ge=0, description="restarts from the last checkpoint after worker failures")
    run_name: Optional[str] = Field(None, description="Ray run name; the same name and storage resume a run; "
                                                      "unset: a new unique name")
    sync_batchnorm: bool = Field(False, description="SyncBatchNorm across GPU workers (ignored on CPU)")
    address: Optional[str] = Field(None, description="Ray cluster to join with --workers: HOST:PORT (the head's GCS), "
                                                     "ray://HOST:PORT or auto (default: $RAY_ADDRESS, else a local "
                                                     "Ray on 127.0.0.1)")

    @classmethod
    def of(cls, resources: WorkerResources, **options) -> ScaleConfig:
        """A run as wide as `resources` (e.g. a sweep trial's `TrialResources`), with the run's own options."""
        return cls(**{name: getattr(resources, name) for name in WorkerResources.model_fields}, **options)

    @field_validator("address")
    @classmethod
    def _address_form(cls, value: Optional[str]) -> Optional[str]:
        if value is not None:
            try:
                parse_ray_address(value)
            except UserError as exc:  # pydantic reports ValueErrors with the option (and file:line)
                raise ValueError(str(exc)) from None
        return value


__all__ = ["ScaleConfig", "WorkerResources"]
