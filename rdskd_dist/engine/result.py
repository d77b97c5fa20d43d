"""What one distillation produced: the result line, `result.json` and the tracked run all read this."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from rdskd_dist.engine.health import result_suffix


@dataclass
class DistillResult:
    method: str
    dataset: str
    student_arch: str
    teacher_accuracy: Optional[float]
    student_accuracy: float
    iterations: int
    generator_steps: int
    student_steps: int
    train_time_s: float
    wall_time_s: float
    samples_per_s: float
    world_size: int
    device: str
    precision: str = "fp32"  # what the run computed in (`precision auto` resolved on the training device)
    health: dict[str, Any] = field(default_factory=dict)  # engine/health.py: fresh generated samples, no test data

    def line(self) -> str:
        teacher = "n/a" if self.teacher_accuracy is None else f"{self.teacher_accuracy:.2f}%"
        return (f"result: method={self.method} dataset={self.dataset} teacher_acc={teacher} "
                f"student_acc={self.student_accuracy:.2f}% student={self.student_arch} "
                f"steps=G{self.generator_steps}/S{self.student_steps} wall={self.wall_time_s:.1f}s "
                f"samples/s={self.samples_per_s:.0f} workers={self.world_size} device={self.device} {self.precision}"
                + result_suffix(self.health))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
