"""What made a Ray Train run fail: the worker's own exception inside Ray Train's wrappers.

Ray Train V2 raises a `TrainingFailedError` that holds the failed workers' errors (or the
controller's), each wrapping the exception the training function raised. The driver re-raises that
exception when it is a user error; a sweep writes its one-line description into the trial's row.
`is_lost_worker` tells a lost process or node (a sweep retries the trial) from the training function's own
error (the failure is the trial's row). Importing this module imports no ray (`is_lost_worker` does, when
called), so a sweep's driver and in-process trials can use it cheaply.
"""

from __future__ import annotations

from rdskd_dist.errors import one_line


def root_cause(exc: BaseException) -> BaseException:
    """The exception the training function raised (the lowest rank's, when several failed)."""
    failures = getattr(exc, "worker_failures", None)
    if failures:
        exc = failures[min(failures)]
    exc = getattr(exc, "controller_failure", exc)
    cause = getattr(exc, "cause", None)  # RayTaskError-style wrappers keep the original
    return cause if isinstance(cause, BaseException) else exc


def is_lost_worker(exc: BaseException) -> bool:
    """True when a Train run failed because a process or node died (Tune should retry the trial), False
    when the distillation itself raised (a bad option, NaN: retrying would fail the same way)."""
    import ray.exceptions as rex

    lost = (rex.RayActorError, rex.NodeDiedError, rex.WorkerCrashedError, rex.OwnerDiedError, rex.ObjectLostError)
    try:  # Ray Train V2's own wrappers around dead or unreachable workers
        from ray.train.v2._internal.exceptions import (UserExceptionWithTraceback, WorkerGroupStartupFailedError,
                                                       WorkerGroupStartupTimeoutError, WorkerHealthCheckFailedError,
                                                       WorkerHealthCheckTimeoutError)

        lost += (WorkerHealthCheckFailedError, WorkerHealthCheckTimeoutError, WorkerGroupStartupFailedError,
                 WorkerGroupStartupTimeoutError)
    except ImportError:  # pragma: no cover - another Ray version: only Ray core's errors count
        UserExceptionWithTraceback = ()  # noqa: N806
    failures = getattr(exc, "worker_failures", None)
    if failures:
        return all(is_lost_worker(f) for f in failures.values())
    controller = getattr(exc, "controller_failure", None)
    if controller is not None:
        return is_lost_worker(controller)
    if UserExceptionWithTraceback and isinstance(exc, UserExceptionWithTraceback):
        return False
    return isinstance(exc, lost)


def describe_error(exc: BaseException) -> str:
    """One line naming the root cause, without traceback: `TypeName: message`."""
    exc = root_cause(exc)
    text = str(exc)
    if "Traceback (most recent call last)" in text:  # a stringified remote traceback: keep its last line
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        text = lines[-1] if lines else text
    name = type(exc).__name__
    text = one_line(Exception(text)) if text else name
    return text if text.startswith(name) else f"{name}: {text}"


__all__ = ["root_cause", "is_lost_worker", "describe_error"]
