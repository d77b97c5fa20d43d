"""The sweep folder and its ledger of finished trials (the source of truth for results and resume).

    <output>/<name>/
        spec.yaml          the resolved spec the sweep runs (a resumed sweep must match it)
        design.json        robustness: every trial's key, method, point, seed and design values
        teacher.pt         when the spec has a teacher_train block (trained once, reused)
        ledger/<key>.json  one file per finished trial (status ok, failed or stopped), written
                           atomically by the Tune driver when the trial ends
        results.parquet    every ledger row, one per trial (rewritten after each trial)
        summary.json, summary.md, plots/*.png
        optuna.db          optimize mode: the Optuna studies (sqlite)
        trials/<key>/      in-process trials' student.pt and result.json
        train/<run>/       Ray Train storage of trials with workers >= 1
        tune/<attempt>/    Tune's own experiment folder, one per invocation
    (with --storage, train/ and tune/ live in the storage instead, and the other files are copied
    there: see rdskd_dist/tune/storage.py)

Resume = run the design's trials that have no ledger file. A trial that was running when the
sweep stopped has no ledger file, so it is run again from its start; finished ones never are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Optional

from rdskd_dist.files import atomic_write, atomic_write_json, read_json

STATUSES = ("ok", "failed", "stopped")

# Column types of results.parquet (design columns `mult_<name>` are added per spec, as float64).
_COLUMNS: list[tuple[str, str]] = [
    ("sweep", "string"), ("mode", "string"), ("key", "string"), ("method", "string"), ("point", "int64"),
    ("seed", "int64"), ("status", "string"), ("error", "string"),
    ("student_accuracy", "float64"), ("teacher_accuracy", "float64"),
    ("iterations", "int64"), ("generator_steps", "int64"), ("student_steps", "int64"),
    ("train_time_s", "float64"), ("wall_time_s", "float64"), ("samples_per_s", "float64"),
    ("world_size", "int64"), ("device", "string"),
    ("w_oh", "float64"), ("w_ie", "float64"), ("w_ds", "float64"), ("w_a", "float64"), ("w_bn", "float64"),
    ("lr_generator", "float64"), ("lr_student", "float64"), ("batch_size", "int64"), ("latent_dim", "int64"),
    ("temperature", "float64"), ("schedule", "string"), ("student", "string"), ("precision", "string"),
    ("budget_generator_steps", "int64"), ("budget_student_steps", "int64"),
]
_TAIL: list[tuple[str, str]] = [
    ("trial_id", "string"), ("attempt", "string"), ("started_at", "float64"), ("finished_at", "float64"),
    ("result_path", "string"), ("checkpoint_path", "string"), ("config_json", "string"),
    # where the trial ran (rank 0 of its Train run, or its own process) and how often it was restarted
    ("node_id", "string"), ("hostname", "string"), ("nodes", "string"), ("retries", "int64"),
    ("train_starts", "int64"), ("resumed_from_iteration", "int64"),
    # where the trial's wall time went, seconds (rdskd_dist/tune/trainable.py timing_columns)
    ("launch_s", "float64"), ("startup_s", "float64"), ("setup_s", "float64"), ("train_s", "float64"),
    ("eval_s", "float64"), ("finish_s", "float64"), ("trial_wall_s", "float64"), ("overhead_frac", "float64"),
    ("train_cpu_s", "float64"),
]


class SweepFolder:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.ledger_dir = self.path / "ledger"
        self.parquet = self.path / "results.parquet"
        self.spec_file = self.path / "spec.yaml"

    # ------------------------------------------------------------ ledger
    def record(self, row: dict[str, Any]) -> None:
        atomic_write_json(row, self.ledger_dir / f"{row['key']}.json")

    def rows(self) -> list[dict[str, Any]]:
        if not self.ledger_dir.is_dir():
            return []
        rows = []
        for file in sorted(self.ledger_dir.glob("*.json")):
            try:
                rows.append(read_json(file))
            except (OSError, json.JSONDecodeError):  # atomic writes make this unlikely; skip rather than die
                continue
        return rows

    def finished_keys(self, retry_failed: bool = False) -> set[str]:
        return {r["key"] for r in self.rows() if not (retry_failed and r.get("status") != "ok")}

    # ------------------------------------------------------------ parquet
    def write_parquet(self, rows: Optional[Iterable[dict[str, Any]]] = None, design_columns: Iterable[str] = ()) -> Path:
        write_parquet(self.rows() if rows is None else list(rows), self.parquet, design_columns)
        return self.parquet


def schema(design_columns: Iterable[str] = ()):
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64()}
    columns = _COLUMNS + [(f"mult_{name}", "float64") for name in design_columns] + _TAIL
    return pa.schema([(name, types[t]) for name, t in columns])


def _coerce(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "string":
        return str(value)
    if kind == "int64":
        return int(value)
    return float(value)


def write_parquet(rows: list[dict[str, Any]], path: Path, design_columns: Iterable[str] = ()) -> None:
    """One row per trial, atomically (a reader never sees a half-written file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    design = list(dict.fromkeys([*design_columns, *(k[5:] for r in rows for k in r if k.startswith("mult_"))]))
    sch = schema(design)
    kinds = {f.name: ("string" if f.type == pa.string() else "int64" if f.type == pa.int64() else "float64")
             for f in sch}
    table = pa.Table.from_pylist([{name: _coerce(r.get(name), kinds[name]) for name in sch.names} for r in rows],
                                 schema=sch)
    atomic_write(path, lambda f: pq.write_table(table, f))


def read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()
