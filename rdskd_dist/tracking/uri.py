"""Where runs are logged: the tracking URI, its default, and a fail-fast check before any training.

Order: `--tracking-uri`, else `$MLFLOW_TRACKING_URI`, else a local sqlite store
`sqlite:///<folder>/mlflow.db` (artifacts beside it in `<folder>/mlartifacts/`). Only the
driver process (the CLI, or the Tune driver's callback) ever writes to it, so parallel trials
never race on a sqlite file.

Nothing here imports mlflow: the check costs milliseconds and runs before Ray or torch work.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

from rdskd_dist.errors import UserError
from rdskd_dist.redact import redact, split_credentials

ENV_URI = "MLFLOW_TRACKING_URI"
ENV_USER, ENV_PASSWORD = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"
DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
SERVER_SCHEMES = ("http", "https")
CHECK_TIMEOUT_S = 5.0


def default_tracking_uri(folder: Optional[str | os.PathLike] = None) -> str:
    """`$MLFLOW_TRACKING_URI` if set, else `sqlite:///<folder or cwd>/mlflow.db` (absolute)."""
    env = os.environ.get(ENV_URI, "").strip()
    if env:
        return env
    return sqlite_uri(Path(folder or Path.cwd()) / DB_NAME)


def sqlite_uri(path: str | os.PathLike) -> str:
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def resolve_tracking_uri(uri: Optional[str], folder: Optional[str | os.PathLike] = None, existing: bool = False) -> str:
    """The URI to use (argument, env, default), checked: see `check_tracking_uri` (`existing` for read-only
    commands: a local store must already be there)."""
    return check_tracking_uri(uri if uri else default_tracking_uri(folder), existing=existing)


def is_server_uri(uri: str) -> bool:
    return urllib.parse.urlparse(uri).scheme in SERVER_SCHEMES


def sqlite_path(uri: str) -> Optional[Path]:
    """The database file of a `sqlite:///...` URI (None for other schemes)."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite:"):]
    if not rest.startswith("///"):
        return None
    return Path(rest[3:]) if rest[3:].startswith("/") else Path(rest[3:]).resolve()


def local_artifact_root(uri: str) -> Optional[Path]:
    """Where experiments created here keep their artifacts for a local sqlite store (beside the db)."""
    db = sqlite_path(uri)
    return db.parent / ARTIFACTS_DIR if db is not None else None


def _hint() -> str:
    return ("use http://HOST:PORT for a tracking server or sqlite:///ABSOLUTE/PATH/mlflow.db for a local store "
            f"(or unset {ENV_URI} for ./{DB_NAME})")


def check_tracking_uri(uri: str, timeout_s: float = CHECK_TIMEOUT_S, existing: bool = False) -> str:
    """Validate a tracking URI before any training starts; returns it normalised.

    * `http(s)://host[:port][/prefix]`: the server must answer `GET /health` (or its REST API)
      within `timeout_s`, else a one-line `UserError`. Credentials in the URI (`user:password@`)
      move to $MLFLOW_TRACKING_USERNAME / $MLFLOW_TRACKING_PASSWORD, which MLflow reads, and the
      URI is returned without them: it is printed and passed around, they are not.
    * `sqlite:///path` (relative paths are made absolute) and `file:///path`: the folder must be
      creatable; a bare path ending in `.db` means a sqlite file.
    * SQL databases (`postgresql://`, `mysql://`, `mssql://`) are passed through unchecked.

    With `existing` (read-only commands such as `pull`), a local store must already exist: a missing
    sqlite file or file-store folder is a one-line `UserError`, and nothing is created (MLflow would
    otherwise make an empty database).
    """
    uri = (uri or "").strip()
    if not uri:
        raise UserError(f"empty MLflow tracking URI; {_hint()}")
    if "://" not in uri and not uri.startswith(("sqlite:", "file:")):
        if uri.endswith(".db"):
            return check_tracking_uri(sqlite_uri(uri), timeout_s, existing)
        scheme = re.match(r"^([A-Za-z][\w+.\-]*):", uri)
        what = f"has no '//' after its scheme {scheme[1]!r}" if scheme else "has no scheme"
        raise UserError(f"malformed MLflow tracking URI {redact(uri)!r}: {what}; {_hint()}")
    parsed = urllib.parse.urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in SERVER_SCHEMES:
        return _check_server(uri, parsed, timeout_s)
    if scheme == "sqlite":
        path = sqlite_path(uri)
        if path is None or not path.name:
            raise UserError(f"malformed sqlite tracking URI {redact(uri)!r}; use sqlite:///ABSOLUTE/PATH/mlflow.db")
        if existing:
            _check_existing(path, uri, "sqlite database file", Path.is_file)
        else:
            _check_folder(path.parent, uri)
        return f"sqlite:///{path}"
    if scheme == "file":
        path = Path(urllib.parse.unquote(parsed.path))
        if not path.is_absolute():
            raise UserError(f"malformed file tracking URI {redact(uri)!r}; use file:///ABSOLUTE/PATH")
        if existing:
            _check_existing(path, uri, "file store folder", Path.is_dir)
        else:
            _check_folder(path, uri)
        return uri
    if scheme in DATABASE_SCHEMES or scheme.split("+")[0] in DATABASE_SCHEMES or scheme.startswith("databricks"):
        return uri
    raise UserError(f"unsupported MLflow tracking URI scheme {parsed.scheme!r} in {redact(uri)!r}; {_hint()}")


def _check_existing(path: Path, uri: str, what: str, is_kind) -> None:
    """A read-only command's local store: it must be there already (nothing is created)."""
    if not path.exists():
        raise UserError(f"MLflow tracking store {redact(uri)} does not exist (no {what} {path}); pass the "
                        f"--tracking-uri of an existing store or set {ENV_URI}")
    if not is_kind(path):
        raise UserError(f"MLflow tracking store {redact(uri)} is not a {what}: {path}")


def _check_folder(folder: Path, uri: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the folder of tracking store {redact(uri)}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK):
        raise UserError(f"tracking store folder {folder} is not writable ({redact(uri)})")


def _check_server(uri: str, parsed: urllib.parse.ParseResult, timeout_s: float) -> str:
    shown = redact(uri)
    if not parsed.hostname:
        raise UserError(f"malformed tracking server URI {shown!r}: no host; {_hint()}")
    try:
        parsed.port  # noqa: B018 - raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        raise UserError(f"malformed tracking server URI {shown!r}: bad port; {_hint()}") from None
    if parsed.query or parsed.fragment:
        raise UserError(f"malformed tracking server URI {shown!r}: no query or fragment expected (pass a token in "
                        "$MLFLOW_TRACKING_TOKEN, a password in $MLFLOW_TRACKING_PASSWORD)")
    uri = _export_credentials(uri)
    base = uri.rstrip("/")
    status, reason = _get(f"{base}/health", timeout_s)
    if status == 200:
        return base
    if status is not None and status not in (401, 403):  # some proxies have no /health: ask the REST API
        api_status, _ = _get(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default", timeout_s)
        if api_status in (200, 404):  # 404: RESOURCE_DOES_NOT_EXIST is still a live MLflow API
            return base
    if status in (401, 403):
        raise UserError(f"MLflow tracking server {base} refused access (HTTP {status}); set MLFLOW_TRACKING_TOKEN "
                        "or MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD")
    what = f"HTTP {status}" if status is not None else reason
    raise UserError(f"MLflow tracking server {base} is unreachable ({what}); start it (e.g. mlflow server "
                    f"--host 127.0.0.1 --port {parsed.port or 5000}) or pass another --tracking-uri; "
                    "nothing was trained")


def _export_credentials(uri: str) -> str:
    """`uri` without `user:password@`; those go to the environment variables MLflow reads for basic auth."""
    clean, user, password = split_credentials(uri)
    if user is not None:
        os.environ[ENV_USER] = user
    if password is not None:
        os.environ[ENV_PASSWORD] = password
    return clean


def _get(url: str, timeout_s: float) -> tuple[Optional[int], str]:
    """(HTTP status, '') or (None, why the connection failed)."""
    request = urllib.request.Request(url, headers=_auth_headers())
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - http(s) only
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = getattr(reason, "strerror", None) or str(reason)
        return None, re.sub(r"^\[Errno -?\d+\]\s*", "", text).lower()
    except (TimeoutError, OSError) as exc:
        return None, "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc)).lower()


def _auth_headers() -> dict[str, str]:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        import base64

        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


def describe_uri(uri: str, experiment_id: Optional[str] = None) -> str:
    """How to look at the runs of `uri` in a browser (the MLflow 3 UI opens in its GenAI view unless
    the link asks for the model-training one)."""
    page = f"/#/experiments/{experiment_id}?workflowType=machine_learning" if experiment_id else "/"
    if is_server_uri(uri):
        return f"open {redact(uri).rstrip('/')}{page}"
    return f"view with: mlflow ui --backend-store-uri {redact(uri)}  then open http://127.0.0.1:5000{page}"


__all__ = ["check_tracking_uri", "default_tracking_uri", "resolve_tracking_uri", "is_server_uri", "sqlite_path",
           "sqlite_uri", "local_artifact_root", "describe_uri", "ENV_URI"]
