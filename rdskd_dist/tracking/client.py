"""An MlflowClient whose calls survive a tracking-server restart, and process-wide MLflow settings.

`RetryingClient(uri)` forwards every MlflowClient method; a call that fails for a transient
reason (connection refused or reset, timeout, HTTP 429/5xx, a locked sqlite file) is retried with
exponential backoff (1 s, 2 s, 4 s, ... capped at 30 s) for up to `retry_for_s` seconds (default
300, `$RDSKD_MLFLOW_RETRY_S`), printing one warning line per outage. Other errors (a bad
parameter, a missing run) are raised at once. MLflow's own HTTP retries are turned down to two
quick ones so that this loop is what decides how long to wait.

Calls carry explicit run ids: nothing here touches MLflow's global active-run state. The only
process-wide setting is the tracking/registry URI, set temporarily by `use_tracking_uri` around
the few fluent helpers that read it (`mlflow.pytorch.log_model`, `download_artifacts`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from rdskd_dist.errors import one_line

log = logging.getLogger("rdskd_dist.tracking")

RETRY_ENV = "RDSKD_MLFLOW_RETRY_S"
DEFAULT_RETRY_S = 300.0
MAX_BACKOFF_S = 30.0

# Quiet, quick-failing MLflow defaults (the user's environment wins).
MLFLOW_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_RECORD_ENV_VARS_IN_MODEL_LOGGING": "false",
}

_TRANSIENT_TEXT = (
    "max retries exceeded", "connection refused", "connection aborted", "connection reset", "remotedisconnected",
    "read timed out", "timed out", "temporarily unavailable", "bad gateway", "service unavailable",
    "gateway timeout", "too many requests", "too many 500 error responses", "too many 502 error responses",
    "too many 503 error responses", "too many 504 error responses", "too many 429 error responses",
    "database is locked", "failed to establish a new connection", "newconnectionerror",
)
_TRANSIENT_CODES = ("TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "INTERNAL_ERROR")


def configure_mlflow_env() -> None:
    for key, value in MLFLOW_ENV.items():
        os.environ.setdefault(key, value)
    for name in ("mlflow.store", "mlflow.tracking.fluent", "alembic"):  # schema set-up and registry chatter
        logging.getLogger(name).setLevel(logging.WARNING)


def is_transient(exc: BaseException) -> bool:
    """A failure worth retrying: the server or the database is (for now) not answering."""
    seen = 0
    while exc is not None and seen < 8:
        try:
            import requests

            if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
                return True
        except ImportError:  # pragma: no cover
            pass
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        code = getattr(exc, "error_code", None)
        if code in _TRANSIENT_CODES:
            return True
        text = str(exc).lower()
        if any(t in text for t in _TRANSIENT_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def retry_seconds() -> float:
    try:
        return float(os.environ.get(RETRY_ENV, DEFAULT_RETRY_S))
    except ValueError:
        return DEFAULT_RETRY_S


def with_retries(fn: Callable[..., Any], what: str, retry_for_s: Optional[float] = None,
                 sleep: Callable[[float], None] = time.sleep) -> Callable[..., Any]:
    """`fn` retried with exponential backoff while it fails transiently, for up to `retry_for_s` s."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        budget = retry_seconds() if retry_for_s is None else retry_for_s
        start, delay, warned = time.monotonic(), 1.0, False
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - classified below
                waited = time.monotonic() - start
                if not is_transient(exc) or waited + delay > budget:
                    raise
                if not warned:
                    first = one_line(exc)[:160]
                    print(f"warning: MLflow call {what} failed ({first}); retrying for up to {budget:.0f}s",
                          file=sys.stderr, flush=True)
                    warned = True
                sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            if warned:
                print(f"MLflow tracking is back after {time.monotonic() - start:.0f}s ({what})", file=sys.stderr,
                      flush=True)
            return result

    return call


class RetryingClient:
    """An `MlflowClient` for one tracking URI (also its registry) with every method retried."""

    def __init__(self, uri: str, retry_for_s: Optional[float] = None):
        configure_mlflow_env()
        from mlflow import MlflowClient

        self.uri = uri
        self.retry_for_s = retry_for_s
        self._client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    @property
    def raw(self):
        return self._client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        return with_retries(attr, name, self.retry_for_s)

    def call(self, fn: Callable[..., Any], *args, what: str = "", **kwargs) -> Any:
        """Any function (e.g. a fluent helper inside `use_tracking_uri`) with the same retries."""
        return with_retries(fn, what or getattr(fn, "__name__", "call"), self.retry_for_s)(*args, **kwargs)


@contextlib.contextmanager
def use_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent helpers at `uri` (tracking and registry) for the duration of the block.

    `mlflow.set_tracking_uri` also exports `MLFLOW_TRACKING_URI`; both the module state and the
    environment are put back afterwards.
    """
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    configure_mlflow_env()
    env_keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    before_env = {k: os.environ.get(k) for k in env_keys}
    before = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = before
        for key, value in before_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@functools.lru_cache(maxsize=1)
def git_commit() -> Optional[str]:
    """The commit of the source tree this package runs from ('<sha>-dirty' with local changes), if a git checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None
