"""What made a Ray Train run fail: the worker's own exception inside Ray Train's wrappers.

Ray Train V2 raises a `TrainingFailedError` that holds the failed workers' errors (or the
controller's), each wrapping the exception the training function raised. The driver re-raises that
exception when it is a user error; a sweep writes its one-line description into the trial's row.
Plain Python (no ray import), so a sweep's driver and in-process trials can use it cheaply.
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


__all__ = ["root_cause", "describe_error"]
