"""The typed, validated configuration of one distillation (CLI, YAML, Tune and Python share it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import (BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, ValidationError, ValidationInfo, field_validator,
                      model_validator)

Schedule = Literal["two_stage", "joint", "adversarial"]


# Engine options a search space may vary (name -> integer?); each method adds its own (`Method.sweepable`).
ENGINE_SWEEPABLE: dict[str, bool] = {
    "w_oh": False, "w_ie": False, "w_ds": False, "w_a": False, "w_bn": False, "w_tv": False, "w_range": False,
    "lr_generator": False, "lr_student": False, "temperature": False, "momentum": False, "weight_decay": False,
    "generator_inner_bn_eps": False, "batch_size": True, "latent_dim": True,
}


class DistillConfig(BaseModel):
    """Options left as None take the method's reference value for the dataset, else the engine's
    fallback (`rdskd_dist.engine.resolve`). Method options are flat keys here (`--penalty-refresh`,
    `ar_weight:`) and live in `method_options`, checked against the chosen method's `Options`."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # what to distil
    dataset: str = Field("digits", description="dataset the teacher was trained on (for shapes and the test split)")
    data_root: Optional[Path] = Field(None, description="folder with the dataset files (else $RDSKD_DATA_ROOT)")
    download: bool = Field(False, description="let torchvision download missing dataset files")
    teacher: Optional[str] = Field(None, description="teacher checkpoint file, or a bare state_dict with --teacher-arch")
    teacher_arch: Optional[str] = Field(None, description="architecture of a bare state_dict teacher: a zoo name, "
                                                          "torchvision:NAME or some.module:factory")
    teacher_feature_layer: Optional[str] = Field(
        None, description="teacher module (a name from model.named_modules()) whose output is the activation "
                          "regulariser's feature (dfad_ar_vi; default: the input of the teacher's last Linear)")
    teacher_sha256: Optional[str] = Field(None, pattern=r"^[0-9a-fA-F]{64}$",
                                          description="refuse a teacher file whose SHA-256 differs")
    image_size: Optional[PositiveInt] = Field(
        None, description="input size of teacher, generator and student, a multiple of 4 (default: the dataset's "
                          "32); test images are resized to it")
    teacher_mean: Optional[list[float]] = Field(
        None, description="the teacher's input normalisation mean, one value per channel (default: the dataset's); "
                          "3 values on a grey dataset (or 1 on a colour one) change the input channels")
    teacher_std: Optional[list[float]] = Field(
        None, description="the teacher's input normalisation std, one value per channel (default: the dataset's)")
    probe_data: Optional[Path] = Field(
        None, description="a small labelled probe set the user has (.pt or .npz holding uint8 'images' N x C x H x W "
                          "and int64 'labels'), scored by student and teacher at the end, apart from any test split")
    student: Optional[str] = Field(None, description="student architecture (default: the dataset's reference)")
    latent_dim: Optional[PositiveInt] = Field(None, description="generator latent size (default: per dataset)")
    generator_inner_bn_eps: Optional[PositiveFloat] = Field(
        None, description="eps of the generator's two inner BNs (DAFL and RDSKD code pass 0.8 there; DFAD 1e-5)")
    generator_width: PositiveFloat = Field(1.0, description="generator channel width multiplier (1: the reference's)")
    method: str = Field("rdskd", description="distillation method")
    method_options: dict[str, Any] = Field(default_factory=dict, description="the method's own options")
    schedule: Optional[Schedule] = Field(None, description="two_stage, joint or adversarial (default: the method's)")

    # budget
    generator_steps: PositiveInt = Field(2400, description="generator steps of a two-stage schedule's first stage")
    student_steps: PositiveInt = Field(2000, description="student optimisation steps")
    student_steps_per_generator_step: Optional[PositiveInt] = Field(
        None, description="adversarial schedule: student steps per generator step (default: per method)")
    sample_pool: int = Field(0, ge=0, description="two-stage: generate this many batches once from the frozen "
                                                  "generator and draw student batches from them (0: fresh samples every step)")
    generators: PositiveInt = Field(1, description="two-stage: train this many generators in turn from fresh "
                                                   "initialisations, generator_steps/generators steps each; the pool "
                                                   "draws sample_pool/generators batches from each (1: one generator)")
    pool_snapshots: PositiveInt = Field(1, description="two-stage: draw the pool in this many equal slices from the "
                                                       "generator at evenly spaced points of stage 1, the last at its "
                                                       "end (1: all from the final generator)")
    pool_generator_mode: Literal["eval", "train"] = Field(
        "eval", description="two-stage: how the generator's BN layers normalise while it draws the pool: eval "
                            "(running statistics, the reference's frozen generator) or train (each batch by its own "
                            "statistics, as stage 1 made the memory bank's samples; running statistics untouched)")
    pool_latent_std: PositiveFloat = Field(
        1.0, description="two-stage: standard deviation of the latent noise the pool is drawn from (1: the noise "
                         "stage 1 trained on; above 1, samples further from the generator's usual ones, relabelled "
                         "by the teacher like every pool sample)")
    batch_size: PositiveInt = Field(512, description="generated samples per step (per worker when distributed)")
    student_batch_size: Optional[PositiveInt] = Field(
        None, description="samples per student step drawn from the pool or memory bank (default: batch_size)")
    memory_bank: int = Field(0, ge=0, description="keep up to this many of the samples the run generates anyway "
                                                  "(with the teacher's outputs) and train the student on them too "
                                                  "(0: off)")
    augment_shift: int = Field(0, ge=0, description="shift each student sample by up to this many pixels; the "
                                                    "teacher relabels the result (0: off)")
    augment_flip: bool = Field(False, description="mirror each student sample left-right with probability 1/2 "
                                                  "(natural images, not digits); the teacher relabels it")
    augment_rotate: NonNegativeFloat = Field(0.0, le=180.0, description="rotate each student sample by up to this "
                                                                        "many degrees; the teacher relabels it (0: off)")
    augment_scale: NonNegativeFloat = Field(0.0, lt=1.0, description="scale each student sample by a factor in "
                                                                     "[1 - s, 1 + s]; the teacher relabels it (0: off)")
    augment_zoom: NonNegativeFloat = Field(0.0, le=2.0, description="zoom each student sample in about its centre "
                                                                   "by a factor in [1, 1 + z] (objects the generator "
                                                                   "makes small, seen large); the teacher relabels "
                                                                   "it (0: off)")
    augment_window: NonNegativeFloat = Field(0.0, le=1.0, description="keep a random square window of each student "
                                                                      "sample, its side a fraction in [w, 1] of the "
                                                                      "image's, and blacken the rest; the teacher "
                                                                      "relabels it (0: off)")
    augment_mixup: NonNegativeFloat = Field(0.0, description="mix student samples in pairs with Beta(a, a) "
                                                             "coefficients; the teacher relabels the mix (0: off)")
    augment_cutmix: NonNegativeFloat = Field(0.0, description="paste a box of another student sample into each one, "
                                                              "its area a 1 - Beta(a, a) share (CutMix); with "
                                                              "augment_mixup too, each sample gets one of the two at "
                                                              "random; the teacher relabels the result (0: off)")
    augment_adversarial_steps: int = Field(0, ge=0, description="move half of each student batch this many signed-"
                                                                "gradient steps toward where student and teacher "
                                                                "disagree most; the teacher relabels it (0: off)")
    augment_adversarial_eps: PositiveFloat = Field(0.3, description="how far (max norm, in the samples' normalised "
                                                                    "units) those steps may move a sample in all")
    generator_augment_shift: int = Field(0, ge=0, description="generator steps: the teacher (and the method's loss) "
                                                              "judge each generated sample shifted by up to this "
                                                              "many pixels, so class evidence must survive a shift "
                                                              "(0: off)")
    generator_augment_scale: NonNegativeFloat = Field(0.0, lt=1.0, description="generator steps: ... and scaled by a "
                                                                               "factor in [1 - s, 1 + s] (0: off)")
    pool_balance: bool = Field(False, description="two-stage: draw pool samples evenly over the teacher's classes "
                                                  "instead of as the generator made them")

    # optimisation
    lr_generator: Optional[PositiveFloat] = Field(None, description="generator Adam learning rate (default: per method)")
    lr_student: Optional[PositiveFloat] = Field(None, description="student learning rate (default: per method)")
    student_optimizer: Optional[Literal["adam", "sgd"]] = Field(None, description="student optimiser (default: per method)")
    momentum: Optional[NonNegativeFloat] = Field(None, description="SGD momentum (default: per method)")
    weight_decay: Optional[NonNegativeFloat] = Field(None, description="student weight decay (default: per method)")
    lr_decay_at: Optional[list[float]] = Field(None, description="fractions of the student's steps where its lr decays (default: per method)")
    generator_lr_decay_at: Optional[list[float]] = Field(
        None, description="fractions of the generator's steps where its lr decays (default: per method)")
    lr_decay: PositiveFloat = Field(0.1, description="lr multiplier at each decay point")
    student_lr_schedule: Literal["step", "onecycle", "cosine"] = Field(
        "step", description="student lr schedule: step (decay at lr_decay_at), onecycle or cosine")
    temperature: Optional[PositiveFloat] = Field(None, description="KD temperature (default: per method)")
    student_ema: NonNegativeFloat = Field(0.0, lt=1.0, description="keep an exponential moving average of the "
                                                                  "student's weights with this decay per student "
                                                                  "step (e.g. 0.999); at the end of the budget the "
                                                                  "average becomes the student (0: off)")

    # loss weights (None: the method's reference weights for the dataset)
    w_oh: Optional[NonNegativeFloat] = Field(None, description="weight of the one-hot (authenticity) term")
    w_ie: Optional[NonNegativeFloat] = Field(None, description="weight of the information-entropy (class diversity) term")
    w_ds: Optional[NonNegativeFloat] = Field(None, description="weight of RDSKD's inter-sample diversity term")
    w_a: Optional[NonNegativeFloat] = Field(None, description="weight of DAFL's activation term "
                                                         "(DAFL; RDSKD too when set above 0)")
    w_hint: NonNegativeFloat = Field(0.0, description="weight of a feature hint in student steps (RDSKD, DAFL, "
                                     "DFAD): a connector maps the student's late feature to the teacher's (a zoo "
                                     "model's last pre-activation; for any other module the input of its last "
                                     "nn.Linear, or --teacher-feature-layer), squared error relative to the teacher "
                                     "feature's mean square (FitNets; 0: off)")
    onehot_targets: Literal["argmax", "balanced"] = Field(
        "argmax", description="targets of the one-hot (authenticity) term of RDSKD and DAFL: the teacher's argmax "
                              "(the methods' own), or balanced: the batch split evenly over the classes, each sample "
                              "to the class the teacher ranks it highest for under that constraint (Sinkhorn)")
    w_adv: NonNegativeFloat = Field(0.0, description="weight of an adversarial term in generator steps taken once "
                                    "the student has trained (joint and adversarial schedules, and two-stage with "
                                    "adversarial_every): the generator is rewarded for samples where the student's "
                                    "KD divergence from the teacher is high, counted only where both pick the same "
                                    "class (CMI, Fast-Datafree), so samples move toward the student's weaknesses "
                                    "without leaving the teacher's classes")
    adversarial_every: int = Field(0, ge=0, description="two-stage: in the second stage, one more generator step "
                                   "every this many student steps (its loss includes w_adv's term); its batch joins "
                                   "the samples the student draws from, so they follow the student as it learns")
    w_bn: NonNegativeFloat = Field(0.0, description="weight of the BN-statistics term (teachers with BN)")
    w_tv: NonNegativeFloat = Field(0.0, description="weight of a total-variation smoothness prior on the generated "
                                                   "images (any teacher, every method; 0: off)")
    w_range: NonNegativeFloat = Field(0.0, description="weight of a pixel-range prior: generated pixels outside "
                                                      "what the teacher's normalisation allows, [(0 - mean) / std, "
                                                      "(1 - mean) / std], are penalised (any teacher, every method; "
                                                      "0: off)")

    # runtime
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "fp32", description="bf16 autocast, fp32, or auto: bf16 where the training device computes it natively (a GPU "
                            "with bf16, a CPU with AVX512-BF16 or AMX), fp32 elsewhere, where bf16 is emulated and "
                            "several times slower (the run records what it used)")
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
    def _known_classifier(cls, name: Optional[str], info: ValidationInfo) -> Optional[str]:
        from rdskd_dist.models import list_models

        if name is not None and info.field_name == "teacher_arch" and ":" in name:
            return name  # torchvision:NAME or module:factory, checked when the teacher is loaded
        return None if name is None else _known("model", name, list_models("classifier"))

    @model_validator(mode="before")
    @classmethod
    def _gather_method_options(cls, data: Any) -> Any:
        """Flat method-option keys (CLI, YAML, Python) move into `method_options`."""
        from rdskd_dist.methods.registry import option_owners

        if not isinstance(data, dict):
            return data
        owners = option_owners()
        flat = {k: data[k] for k in data if k in owners and k not in cls.model_fields}
        if not flat:
            return data
        rest = {k: v for k, v in data.items() if k not in flat}
        rest["method_options"] = {**(data.get("method_options") or {}), **flat}
        return rest

    @model_validator(mode="after")
    def _check_method_options(self) -> "DistillConfig":
        from rdskd_dist.methods.registry import get_method_class, option_owners

        options_model = get_method_class(self.method).Options
        owners = option_owners()
        for key in self.method_options:
            if key not in options_model.model_fields:
                belongs = f"belongs to {', '.join(owners[key])}" if key in owners else "is unknown"
                raise ValueError(f"option {key!r} {belongs}, not to method {self.method!r}")
        try:
            checked = options_model(**self.method_options)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ValueError(f"{'.'.join(map(str, err['loc']))}: {err['msg']} (got {err.get('input')!r})") from None
        # keep only what was given (so its source stays known); resolve fills the rest
        given = checked.model_dump(include=set(self.method_options))
        if given != self.method_options:
            object.__setattr__(self, "method_options", given)
        return self

    @model_validator(mode="after")
    def _check_input(self) -> "DistillConfig":
        """image_size, teacher_mean and teacher_std against the dataset, before any work."""
        from rdskd_dist.data import input_spec
        from rdskd_dist.errors import UserError

        try:
            input_spec(self)
        except UserError as exc:
            raise ValueError(str(exc)) from None
        return self

    @model_validator(mode="after")
    def _check(self) -> "DistillConfig":
        if self.checkpoint_every and self.checkpoint_every % self.log_every:
            raise ValueError(f"checkpoint_every ({self.checkpoint_every}) must be a multiple of log_every ({self.log_every})")
        for name in ("generators", "pool_snapshots"):  # each splits stage 1 and the pool into slices
            slices = getattr(self, name)
            if slices > 1 and self.schedule not in (None, "two_stage"):
                raise ValueError(f"{name} > 1 needs the two_stage schedule, not {self.schedule!r}")
            if slices > 1 and (self.generator_steps < slices or self.sample_pool < slices):
                raise ValueError(f"{name} ({slices}) needs at least as many generator_steps "
                                 f"({self.generator_steps}) and sample_pool batches ({self.sample_pool})")
        if self.generators > 1 and self.pool_snapshots > 1:
            raise ValueError("pool_snapshots and generators both split the pool: choose one")
        if self.adversarial_every:
            if self.schedule not in (None, "two_stage"):
                raise ValueError(f"adversarial_every needs the two_stage schedule, not {self.schedule!r}")
            if not (self.sample_pool or self.memory_bank):
                raise ValueError("adversarial_every needs a sample_pool or a memory_bank for the second stage")
        if self.augment_zoom and self.augment_scale:
            raise ValueError("augment_zoom and augment_scale both set the student samples' scale: choose one")
        for name in ("lr_decay_at", "generator_lr_decay_at"):
            if any(not 0.0 < f < 1.0 for f in getattr(self, name) or []):
                raise ValueError(f"{name} holds fractions strictly between 0 and 1")
        return self


def _known(kind: str, name: str, valid: list[str]) -> str:
    if name not in valid:
        raise ValueError(f"unknown {kind} {name!r}; valid: {', '.join(valid)}")
    return name
