"""The sweep's score: the one row column that ranks trials, and its direction.

The summary, the plots, the progress line, Optuna and ASHA's searcher metric and the registered
champion all read it from the spec's `objective` block (default: max `student_accuracy`). A trial
is scored only when its status is ok and its score is a finite number.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Literal, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rdskd_dist.tracking.names import DEFAULT_OBJECTIVE

PERCENT = ("student_accuracy", "teacher_accuracy", "health_agreement")  # shown with a % sign
LABELS = {"student_accuracy": "student test accuracy", "health_agreement": "student-teacher agreement"}


class Objective(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str = Field(DEFAULT_OBJECTIVE[0], description="row column that scores a trial: the summary, plots, "
                                                        "progress line, Optuna and the registered champion use it")
    mode: Literal["max", "min"] = DEFAULT_OBJECTIVE[1]

    @field_validator("metric")
    @classmethod
    def _a_score_column(cls, metric: str) -> str:
        from rdskd_dist.tune.rows import score_columns

        if metric not in score_columns():
            raise ValueError(f"{metric!r} is not a trial result; valid: {', '.join(score_columns())}")
        return metric

    # ------------------------------------------------------------ reading rows
    def value(self, row: Mapping[str, Any]) -> Optional[float]:
        """The row's score; None when the trial is not scored (not ok, or no finite value)."""
        if row.get("status") != "ok":
            return None
        try:
            value = float(row.get(self.metric))
        except (TypeError, ValueError):
            return None
        return value if math.isfinite(value) else None

    def scored(self, rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        return [r for r in rows if self.value(r) is not None]

    def better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b

    def best(self, rows: Iterable[Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
        """The best scored row (the first of equals)."""
        best = None
        for row in self.scored(rows):
            if best is None or self.better(self.value(row), self.value(best)):
                best = row
        return best

    # ------------------------------------------------------------ showing it
    @property
    def percent(self) -> bool:
        return self.metric in PERCENT

    def format(self, value: Optional[float]) -> str:
        if value is None:
            return "-"
        return f"{value:.2f}%" if self.percent else f"{value:.4g}"

    @property
    def name(self) -> str:
        """What the score is, in words (`student test accuracy`)."""
        return LABELS.get(self.metric, self.metric)

    @property
    def label(self) -> str:
        """The name with its unit, for titles (`student test accuracy, %`)."""
        return f"{self.name}, %" if self.percent else self.name
