"""Ray Train adapter: the same engine (`Distiller`) on N data-parallel Ray workers.

A thin layer at the engine's edge, on the engine's public API (`rdskd_dist.engine`): the engine
knows nothing of Ray; this package hands it a DDP `wrap` function and a report callback that calls
`ray.train.report`, and restores its state from `ray.train.get_checkpoint()`.

* `worker.py`: `train_loop_per_worker`, one rank: build, restore, train, evaluate, write outputs;
  checkpoints, outputs and fault injection are described there;
* `driver.py`: `build_trainer` / `train_on_ray`, option checks, the TorchTrainer, one-line failures;
* `callbacks.py`: `ReportLog`, `ProgressPrinter` and the report history (`dedupe_reports`);
* `adapters/train_failures.py` (no ray import): the root cause of a failed run (`root_cause`,
  `describe_error`, `is_lost_worker`); `adapters/ray_connect.py`: `init_ray`, the one Ray start-up.

Data parallelism and the learning-rate rule
    Every worker generates its own `batch_size` samples per step (its own latent noise, seeded per
    rank by `rdskd_dist.engine.noise_seed`), so the **effective batch is `batch_size x workers`**.
    DDP averages the generator's and the student's gradients over the workers. **Learning rates are
    kept exactly as given** (no linear scaling with the number of workers): averaging gradients
    of N independent batches lowers their variance but keeps their scale, and the reference
    optimisers here are mostly Adam, which is insensitive to gradient scale. Scale
    `lr_generator` / `lr_student` yourself if you want the linear-scaling rule. Batch-level loss
    terms (information entropy, inter-sample diversity, BN statistics) are computed over each
    worker's own batch, as in single-process runs of `batch_size`.

Why no step is lost or counted twice: Ray resumes from the latest checkpoint the controller has
registered, and reports reach the controller in order, so every report up to that checkpoint was
delivered exactly once. Reports after it are either lost with the failed workers (the controller
polls each worker's one-slot report queue every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, 2 s by default)
or delivered; both ways the next attempt makes them again, bit-identically, and `dedupe_reports`
keeps the last copy.

Report cadence: a worker's `ray.train.report` blocks while its previous report has not been
polled, so reports closer than that interval (2 s) slow training down. Keep `log_every` at a
few seconds of training or more, or lower RAY_TRAIN_HEALTH_CHECK_INTERVAL_S in the driver's
environment (Ray passes it on to the controller and the workers), as the tests do.

Importing this package imports ray; `--workers 0` runs never import it.
"""

from rdskd_dist.adapters.ray_train.callbacks import ProgressPrinter, ReportLog, dedupe_reports, read_report_log
from rdskd_dist.adapters.ray_train.driver import (RayTrainRunError, build_trainer, default_run_name, resolve_storage,
                                                  result_from_metrics, train_on_ray)
from rdskd_dist.adapters.ray_train.worker import (CRASH_ENV, CRASH_MARKER, ENGINE_FILE, FINAL_FILE, HISTORY_FILE,
                                                  OUTPUT_FILES, train_loop_per_worker)
from rdskd_dist.adapters.scale import ScaleConfig

__all__ = ["ScaleConfig", "build_trainer", "train_on_ray", "train_loop_per_worker", "dedupe_reports",
           "read_report_log", "result_from_metrics", "resolve_storage", "default_run_name", "ReportLog",
           "ProgressPrinter", "RayTrainRunError", "CRASH_ENV", "CRASH_MARKER", "ENGINE_FILE", "FINAL_FILE",
           "HISTORY_FILE", "OUTPUT_FILES"]
