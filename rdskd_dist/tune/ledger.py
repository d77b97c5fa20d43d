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
from rdskd_dist.tune.rows import STATUSES, columns, parquet_schema, parquet_value

__all__ = ["STATUSES", "SweepFolder", "read_parquet", "write_parquet"]


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


def write_parquet(rows: list[dict[str, Any]], path: Path, design_columns: Iterable[str] = ()) -> None:
    """One row per trial (`tune/rows.py` is the schema), atomically (a reader never sees a half-written file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    design = list(dict.fromkeys([*design_columns, *(k[5:] for r in rows for k in r if k.startswith("mult_"))]))
    kinds = columns(design)
    table = pa.Table.from_pylist([{name: parquet_value(r.get(name), kind) for name, kind in kinds.items()}
                                  for r in rows], schema=parquet_schema(design))
    atomic_write(path, lambda f: pq.write_table(table, f))


def read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()
