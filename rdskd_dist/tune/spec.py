"""The sweep spec: one pydantic model (extra keys forbidden) loaded from YAML plus command-line overrides.

A spec names the sweep, its mode, the methods, the base distillation options (a `DistillConfig`
block), where the teacher comes from, the search space, the design size, seeds, per-trial
resources and the objective. Relative paths in `base` (teacher, data_root) and `output` are
resolved against the current working directory when the spec is loaded, so trials (which Tune may
run in another folder) only ever see absolute paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import (BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, create_model,
                      field_validator, model_validator)

from rdskd_dist.adapters.scale import WorkerResources
from rdskd_dist.config import DistillConfig
from rdskd_dist.config_sources import YamlFile, format_validation_error
from rdskd_dist.errors import UserError
from rdskd_dist.files import is_uri
from rdskd_dist.teacher_training import TeacherConfig
from rdskd_dist.tune.score import Objective
from rdskd_dist.tune.space import Dim, sweepable_options

__all__ = ["Dim", "Objective", "SweepSpec", "TrialResources", "load_spec", "sweepable_options"]


RUNTIME_FIELDS = {"max_concurrent", "output", "name", "storage"}  # may differ between a sweep and its resumption
# Options that belong to the sweep rather than to one distillation: the spec sets them per trial.
TRIAL_OWNED = {"method", "seed", "output", "checkpoint"}

# The teacher_train block: TeacherConfig minus what the sweep decides (dataset, data, input size, output file).
_TEACHER_SKIP = {"dataset", "data_root", "download", "image_size", "out"}
TeacherTrainSpec = create_model(
    "TeacherTrainSpec",
    __config__=ConfigDict(extra="forbid"),
    **{name: (field.annotation, field) for name, field in TeacherConfig.model_fields.items() if name not in _TEACHER_SKIP},
)


class TrialResources(WorkerResources):
    """What one trial reserves. workers 0: the trial runs the engine in its own process (no Ray Train) and
    reserves one worker's CPUs and GPUs; workers >= 1: the trial builds and fits a Ray Train TorchTrainer
    with that many workers."""

    trial_cpus: PositiveFloat = Field(0.01, description="CPU reserved by the trial process when workers >= 1 "
                                                        "(it only waits on its Train run)")
    max_failures: int = Field(2, ge=0, description="Tune retries of a trial whose process or Train workers died "
                                                   "(a lost node); with workers >= 1 a retry resumes from the "
                                                   "trial's last Train checkpoint")
    controller_in_trial: bool = Field(True, description="workers >= 1: run Ray Train's controller in the trial's "
                                                        "process (reused by Tune) instead of a new actor process "
                                                        "per trial; the same runs, retries and results")

    def per_trial(self) -> tuple[float, float]:
        """(CPUs, GPUs) one running trial holds, its Train workers included."""
        if self.workers == 0:
            return self.cpus_per_worker, self.gpus_per_worker
        return self.trial_cpus + self.workers * self.cpus_per_worker, self.workers * self.gpus_per_worker


class EarlyStopping(BaseModel):
    """ASHA in optimize mode. Its metric must be reported during training: the student's training
    loss `s/total` (minimised) against the fraction of the student's steps done."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    metric: str = "s/total"
    mode: Literal["max", "min"] = "min"
    grace_period: PositiveFloat = Field(0.25, description="fraction of the student's steps before any stop")
    reduction_factor: float = Field(2.0, gt=1)


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="sweep name (its folder under output)")
    mode: Literal["robustness", "optimize"] = "robustness"
    methods: list[str] = Field(..., min_length=1)
    reference_method: str = Field("rdskd", description="paired differences are taken against this method")
    base: DistillConfig = Field(default_factory=DistillConfig, description="distillation options shared by every trial")
    teacher_train: Optional[TeacherTrainSpec] = Field(  # type: ignore[valid-type]
        None, description="train the teacher once into the sweep folder (when base.teacher is not given)")
    method_base: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-method overrides of base options, e.g. budgets at a similar cost "
                                          "(DAFL pays a generator step for every student step)")
    space: dict[str, Dim] = Field(default_factory=dict)
    num_points: PositiveInt = Field(8, description="robustness: Sobol points; optimize: trials per method")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1,
                             description="robustness: seeds run at every point (the same for every method); "
                                         "optimize: the first seed is used")
    design_seed: int = Field(0, description="scrambling seed of the Sobol design (optimize: the TPE seed)")
    max_concurrent: PositiveInt = 2
    trial: TrialResources = Field(default_factory=TrialResources)
    objective: Objective = Field(default_factory=Objective)
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    output: Path = Field(Path("sweeps"), description="parent folder of the sweep folder")
    storage: Optional[str] = Field(None, description="pyarrow filesystem URI (s3://, gs://, file://) or path for "
                                                     "Tune's and Ray Train's run state and a copy of the sweep's "
                                                     "files (default: the sweep folder)")

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: list[str]) -> list[str]:
        from rdskd_dist.methods import list_methods

        unknown = [m for m in methods if m not in list_methods()]
        if unknown:
            raise ValueError(f"unknown method {unknown[0]!r}; valid: {', '.join(list_methods())}")
        if len(set(methods)) != len(methods):
            raise ValueError("methods are listed twice")
        return methods

    @field_validator("space")
    @classmethod
    def _sweepable(cls, space: dict[str, Dim]) -> dict[str, Dim]:
        for name, dim in space.items():
            if name not in sweepable_options():
                raise ValueError(f"{name!r} cannot be swept; sweepable options: "
                                 f"{', '.join(sorted(sweepable_options()))}")
        return space

    @field_validator("storage")
    @classmethod
    def _storage_uri(cls, storage: Optional[str]) -> Optional[str]:
        from rdskd_dist.tune.storage import check_storage

        if storage is None:
            return None
        try:
            return check_storage(storage)  # a local path becomes absolute
        except UserError as exc:  # pydantic reports ValueErrors with the option (and file:line)
            raise ValueError(str(exc)) from None

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds are listed twice")
        return seeds

    @model_validator(mode="after")
    def _check(self) -> "SweepSpec":
        owned = sorted(k for k in TRIAL_OWNED if k in self.base.model_fields_set)
        if owned:
            raise ValueError(f"base.{owned[0]} is set per trial by the sweep; remove it "
                             "(methods, seeds and the sweep folder are spec options)")
        if self.base.teacher is None and self.teacher_train is None:
            raise ValueError("no teacher: set base.teacher (a checkpoint file) or add a teacher_train block")
        if self.base.teacher is not None and self.teacher_train is not None:
            raise ValueError("give base.teacher or teacher_train, not both")
        if self.mode == "optimize" and not self.space:
            raise ValueError("optimize mode needs a search space")
        for method, options in self.method_base.items():
            if method not in self.methods:
                raise ValueError(f"method_base.{method}: not one of the sweep's methods ({', '.join(self.methods)})")
            owned = sorted(set(options) & set(TRIAL_OWNED))
            if owned:
                raise ValueError(f"method_base.{method}.{owned[0]} is set per trial by the sweep; remove it")
            try:
                self.base_for(method)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"])
                raise ValueError(f"method_base.{method}.{where}: {err['msg']}") from None
        self._check_budgets()
        return self

    def _check_budgets(self) -> None:
        """Each method's reference trial resolves (a budget its schedule cannot split, say): a one-line error
        before Ray or any trial starts, not a sweep of failed rows. Design points are not checked here: an
        invalid point is that trial's failed row."""
        from rdskd_dist.data import get_spec
        from rdskd_dist.engine.resolve import resolve_config

        for method in self.methods:
            try:
                resolve_config(self.base_for(method), get_spec(self.base.dataset))
            except UserError as exc:
                raise ValueError(f"{method} trials: {exc}") from None

    def base_for(self, method: str) -> DistillConfig:
        """The base options of `method`'s trials: `base` updated by `method_base[method]`.

        The teacher is the same in every trial, so trials do not evaluate it (`eval_teacher: false`) unless
        the spec asks: `teacher_accuracy` in each row repeats the accuracy recorded in the teacher file."""
        quiet_teacher = {} if "eval_teacher" in self.base.model_fields_set else {"eval_teacher": False}
        # the method is set first, so that a method_base block may hold that method's own options
        return DistillConfig.model_validate({**self.base.model_dump(), **quiet_teacher,
                                             **self.method_base.get(method, {}), "method": method})

    # ------------------------------------------------------------ derived
    @property
    def sweep_dir(self) -> Path:
        return self.output / self.name

    @property
    def reference(self) -> str:
        """The method paired differences are taken against (the first method if RDSKD is not swept)."""
        return self.reference_method if self.reference_method in self.methods else self.methods[0]

    def design_dump(self) -> dict[str, Any]:
        """Everything that decides what the trials compute: a resumed sweep must match it."""
        data = self.model_dump(mode="json", exclude=RUNTIME_FIELDS)
        data["trial"] = {"workers": self.trial.workers}  # world size changes the effective batch
        return data


def _is_uri(text: str) -> bool:
    """s3://..., gs://... (the one URI rule, `files.is_uri`) and MLflow's models:/NAME@ALIAS are not local paths."""
    return is_uri(text) or text.startswith("models:/")


def _absolute(path: Optional[Path | str]) -> Optional[Path]:
    if path is None or _is_uri(str(path)):
        return path if path is None else Path(str(path))
    return Path(path).expanduser().resolve()


def absolutize(spec: SweepSpec) -> SweepSpec:
    """Resolve relative paths against the current folder (trials may run elsewhere)."""
    base = spec.base.model_copy(update={
        "data_root": _absolute(spec.base.data_root),
        "teacher": spec.base.teacher if not spec.base.teacher or _is_uri(spec.base.teacher)
        else str(_absolute(spec.base.teacher)),
    })
    return spec.model_copy(update={"base": base, "output": _absolute(spec.output)})


def load_spec(path: Optional[str | Path], overrides: Optional[dict[str, Any]] = None,
              base_overrides: Optional[dict[str, Any]] = None, data: Optional[dict[str, Any]] = None) -> SweepSpec:
    """Load a spec file (or `data`), apply command-line overrides, validate, make paths absolute."""
    source = YamlFile(path) if path is not None else None
    merged: dict[str, Any] = dict(source.data if source else (data or {}))
    overrides = overrides or {}
    base_overrides = dict(base_overrides or {})
    cli_paths: set[tuple] = set()
    for key, value in overrides.items():
        if "." in key:  # e.g. trial.workers
            head, tail = key.split(".", 1)
            merged[head] = {**(merged.get(head) or {}), tail: value}
        else:
            merged[key] = value
        cli_paths.add(tuple(key.split(".")))
    if "methods" in overrides and isinstance(merged.get("method_base"), dict):
        # --methods narrows the spec's methods: the file's settings for the others are not for this sweep (a
        # method_base entry for a method the file itself does not run is still an error, a typo)
        merged["method_base"] = {m: v for m, v in merged["method_base"].items() if m in overrides["methods"]}
    if base_overrides:
        if "teacher" in base_overrides:  # a teacher on the command line replaces the spec's teacher_train
            merged.pop("teacher_train", None)
        merged["base"] = {**(merged.get("base") or {}), **base_overrides}
        cli_paths.update(("base", k) for k in base_overrides)
    try:
        spec = SweepSpec.model_validate(merged)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, source, cli_paths, what="sweep spec", root="spec")) from None
    return absolutize(spec)


def spec_yaml(spec: SweepSpec) -> str:
    import yaml

    data = spec.model_dump(mode="json", exclude_defaults=False)
    data["base"] = spec.base.model_dump(mode="json", exclude_unset=True)
    return yaml.safe_dump(data, sort_keys=False)
