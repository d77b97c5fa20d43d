"""The typed, validated configuration of one distillation (CLI, YAML, Tune and Python share it)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import (BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, field_validator,
                      model_validator)

Schedule = Literal["two_stage", "joint", "adversarial"]


class DistillConfig(BaseModel):
    """Options left as None take the dataset's or the method's reference value (see `resolve`)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # what to distil
    dataset: str = Field("digits", description="dataset the teacher was trained on (for shapes and the test split)")
    data_root: Optional[Path] = Field(None, description="folder with the dataset files (else $RDSKD_DATA_ROOT)")
    download: bool = Field(False, description="let torchvision download missing dataset files")
    teacher: Optional[str] = Field(None, description="teacher checkpoint file, or a bare state_dict with --teacher-arch")
    teacher_arch: Optional[str] = Field(None, description="architecture of a bare state_dict teacher")
    teacher_sha256: Optional[str] = Field(None, pattern=r"^[0-9a-fA-F]{64}$",
                                          description="refuse a teacher file whose SHA-256 differs")
    student: Optional[str] = Field(None, description="student architecture (default: the dataset's reference)")
    latent_dim: Optional[PositiveInt] = Field(None, description="generator latent size (default: per dataset)")
    generator_bn_eps: PositiveFloat = Field(1e-5, description="eps of the generator's last BN (reference code: 0.8)")
    method: str = Field("rdskd", description="distillation method")
    schedule: Optional[Schedule] = Field(None, description="two_stage, joint or adversarial (default: the method's)")

    # budget
    generator_steps: PositiveInt = Field(2400, description="generator steps of a two-stage schedule's first stage")
    student_steps: PositiveInt = Field(2000, description="student optimisation steps")
    student_steps_per_generator_step: PositiveInt = Field(5, description="adversarial schedule: student steps per generator step")
    sample_pool: int = Field(0, ge=0, description="two-stage: generate this many batches once from the frozen "
                                                  "generator and draw student batches from them (0: fresh samples every step)")
    batch_size: PositiveInt = Field(512, description="generated samples per step (per worker when distributed)")

    # optimisation
    lr_generator: PositiveFloat = Field(1e-3, description="generator Adam learning rate")
    lr_student: Optional[PositiveFloat] = Field(None, description="student learning rate (default: per method)")
    student_optimizer: Optional[Literal["adam", "sgd"]] = Field(None, description="student optimiser (default: per method)")
    momentum: NonNegativeFloat = Field(0.9, description="SGD momentum")
    weight_decay: NonNegativeFloat = Field(0.0, description="student weight decay")
    lr_decay_at: list[float] = Field(default_factory=list, description="fractions of each network's steps where its lr decays")
    lr_decay: PositiveFloat = Field(0.1, description="lr multiplier at each lr_decay_at point")
    temperature: Optional[PositiveFloat] = Field(None, description="KD temperature (default: per method)")

    # loss weights (None: the method's reference weights for the dataset)
    w_oh: Optional[NonNegativeFloat] = Field(None, description="weight of the one-hot (authenticity) term")
    w_ie: Optional[NonNegativeFloat] = Field(None, description="weight of the information-entropy (class diversity) term")
    w_ds: Optional[NonNegativeFloat] = Field(None, description="weight of RDSKD's inter-sample diversity term")
    w_a: Optional[NonNegativeFloat] = Field(None, description="weight of DAFL's activation term")
    w_bn: NonNegativeFloat = Field(0.0, description="weight of the BN-statistics term (teachers with BN)")
    penalty: bool = Field(True, description="RDSKD: exponential penalty on loss increments (off: plain weighted sum)")
    penalty_refresh: Literal["epoch", "step", "ema"] = Field("epoch", description="RDSKD: how the penalty references refresh")
    penalty_epoch: PositiveInt = Field(120, description="RDSKD: generator steps per reference refresh ('epoch')")
    penalty_ema: float = Field(0.9, ge=0.0, lt=1.0, description="RDSKD: decay of the 'ema' reference")
    ar_weight: NonNegativeFloat = Field(1.0, description="DFAD+AR+VI: activation-boundary regulariser weight (beta)")
    ar_margin: PositiveFloat = Field(1.0, description="DFAD+AR+VI: activation-boundary margin (mu)")
    vi_weight: NonNegativeFloat = Field(1.0, description="DFAD+AR+VI: weight of the virtual-interpolation loss")
    vi_alpha: PositiveFloat = Field(1.0, description="DFAD+AR+VI: Beta(alpha, alpha) of the mixing coefficient")
    vi_target: Literal["teacher", "mix"] = Field("teacher", description="DFAD+AR+VI: teacher on the mix, or mix of teacher outputs")

    # runtime
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16 autocast (fast on AMX CPUs and GPUs) or fp32")
    channels_last: bool = Field(False, description="channels_last memory format for conv nets")
    seed: int = Field(0, description="random seed")
    time_phases: bool = Field(False, description="report wall time split into generator, teacher and student work "
                                                 "(synchronises the device at each boundary: for profiling)")
    log_every: PositiveInt = Field(50, description="steps between metric reports")
    checkpoint_every: int = Field(0, ge=0, description="steps between checkpoints (0: none); a multiple of log_every")
    checkpoint: Optional[Path] = Field(None, description="in-process checkpoint file: resumed if present")
    eval_batch_size: PositiveInt = Field(1024, description="batch size of test-set evaluation")
    eval_teacher: bool = Field(True, description="also evaluate the teacher on the test split")
    output: Optional[Path] = Field(None, description="folder for the student, its spec and result.json")

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        from rdskd_dist.data import list_datasets

        return _known("dataset", name, list_datasets())

    @field_validator("method")
    @classmethod
    def _known_method(cls, name: str) -> str:
        from rdskd_dist.methods import list_methods

        return _known("method", name, list_methods())

    @field_validator("student", "teacher_arch")
    @classmethod
    def _known_classifier(cls, name: Optional[str]) -> Optional[str]:
        from rdskd_dist.models import list_models

        return None if name is None else _known("model", name, list_models("classifier"))

    @model_validator(mode="after")
    def _check(self) -> "DistillConfig":
        if self.checkpoint_every and self.checkpoint_every % self.log_every:
            raise ValueError(f"checkpoint_every ({self.checkpoint_every}) must be a multiple of log_every ({self.log_every})")
        if any(not 0.0 < f < 1.0 for f in self.lr_decay_at):
            raise ValueError("lr_decay_at holds fractions strictly between 0 and 1")
        return self


def _known(kind: str, name: str, valid: list[str]) -> str:
    if name not in valid:
        raise ValueError(f"unknown {kind} {name!r}; valid: {', '.join(valid)}")
    return name
