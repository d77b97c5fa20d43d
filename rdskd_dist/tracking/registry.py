"""The model registry: students (`rdskd-<dataset>-<arch>`, alias `champion`) and teachers
(`rdskd-teacher-<dataset>-<arch>`, alias `current`), and `models:/NAME@ALIAS` URIs.

A version is only created once everything it points at is logged, and if anything after its
creation fails (waiting for READY, tags, alias) the version is deleted again: the registry never
holds a half-registered model.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rdskd_dist.errors import UserError
from rdskd_dist.tracking import names
from rdskd_dist.tracking.client import RetryingClient, use_tracking_uri
from rdskd_dist.tracking.runs import ensure_experiment, standard_tags
from rdskd_dist.tracking.uri import resolve_tracking_uri

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w\-]+)|/(?P<version>\d+|latest))/?$")


@dataclass(frozen=True)
class ModelRef:
    name: str
    alias: Optional[str] = None
    version: Optional[str] = None

    def __str__(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"


def is_models_uri(text: Optional[str]) -> bool:
    return bool(text) and str(text).startswith("models:/")


def parse_models_uri(uri: str) -> ModelRef:
    m = _MODELS_URI.match(uri.strip())
    if not m:
        raise UserError(f"malformed model URI {uri!r}; use models:/NAME@ALIAS or models:/NAME/VERSION")
    return ModelRef(m["name"], m["alias"], m["version"])


def get_version(client: RetryingClient, ref: ModelRef):
    """The ModelVersion a reference points at, or a one-line UserError."""
    from mlflow.exceptions import MlflowException

    try:
        if ref.alias:
            return client.get_model_version_by_alias(ref.name, ref.alias)
        if ref.version == "latest":
            versions = client.search_model_versions(f"name='{ref.name}'", order_by=["version_number DESC"],
                                                    max_results=1)
            if not versions:
                raise UserError(f"registered model {ref.name} has no versions (at {client.uri})")
            return versions[0]
        return client.get_model_version(ref.name, ref.version)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise UserError(f"{ref} not found in the registry at {client.uri}") from None
        raise


def ensure_registered_model(client: RetryingClient, name: str, description: str, tags: dict[str, str]) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
        return
    except MlflowException as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
            raise
    try:
        client.create_registered_model(name, tags=tags, description=description)
    except MlflowException as exc:  # created concurrently by another sweep
        if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise


def existing_version(client: RetryingClient, name: str, source: str):
    """The version of `name` registered from `source`, if any (None also when the model does not exist yet)."""
    return next((v for v in _versions(client, name) if v.source == source), None)


def alias_version(client: RetryingClient, name: str, alias: str):
    """The version `alias` points at, or None (no such model or alias)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def register_version(client: RetryingClient, name: str, *, source: str, run_id: Optional[str],
                     model_id: Optional[str] = None, tags: Optional[dict[str, str]] = None,
                     description: str = "", alias: Optional[str] = None, model_description: str = "",
                     model_tags: Optional[dict[str, str]] = None):
    """Create a version of `name` from `source` (all artifacts already logged), tag it, point `alias`
    at it. On any failure after the version exists, delete it and re-raise. A source that already has a
    version is not registered twice: `alias` moves to that version (a resumed sweep whose champion has not
    changed; versions found by search carry their source but not their model id)."""
    ensure_registered_model(client, name, model_description, model_tags or {})
    existing = existing_version(client, name, source)
    if existing is not None:
        if alias:
            client.set_registered_model_alias(name, alias, existing.version)
        return existing
    # MLflow's sqlite/SQL registry looks a `models:/<id>` source up through its global tracking URI, not this
    # client's: point it at this store, or a store named by --tracking-uri away from the working folder fails
    with use_tracking_uri(client.uri):
        version = client.create_model_version(name, source=source, run_id=run_id, tags=tags or {},
                                              description=description or None, model_id=model_id,
                                              await_creation_for=300)
    try:
        if str(version.status) != "READY":  # create_model_version waited; look once more
            version = client.get_model_version(name, version.version)
            if str(version.status) != "READY":
                raise RuntimeError(f"model version {name}/{version.version} is {version.status}, not READY")
        if alias:
            client.set_registered_model_alias(name, alias, version.version)
    except BaseException:
        try:
            client.raw.delete_model_version(name, version.version)
        except Exception:  # noqa: BLE001 - report the original failure
            pass
        raise
    return version


# ---------------------------------------------------------------- teachers

def register_teacher(path: str | os.PathLike, dataset: Optional[str] = None, arch: Optional[str] = None, *,
                     tracking_uri: Optional[str] = None, alias: str = names.TEACHER_ALIAS) -> str:
    """Log a teacher checkpoint as a run artifact and register a version whose source is that artifact.

    The checkpoint is validated first (weights-only load, shapes against the dataset). Registering
    the same file (same SHA-256) again reuses its version and only moves `alias`. Returns the
    `models:/NAME@ALIAS` URI.
    """
    from rdskd_dist.data import get_spec
    from rdskd_dist.files import safe_torch_load, sha256_file
    from rdskd_dist.teachers import TEACHER_FORMAT, load_teacher

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise UserError(f"teacher file not found: {path}")
    payload = safe_torch_load(path, "teacher")
    if isinstance(payload, dict) and payload.get("format") == TEACHER_FORMAT:
        dataset = dataset or payload.get("dataset")
        arch = arch or payload["arch"]["name"]
    if not dataset or not arch:
        raise UserError(f"teacher {path} is a bare state_dict: pass its dataset and arch")
    _, meta = load_teacher(path, get_spec(dataset), arch=arch)  # validates shapes and keys
    digest = sha256_file(path)
    uri = resolve_tracking_uri(tracking_uri)
    client = RetryingClient(uri)
    name = names.teacher_model_name(dataset, arch)
    found = [v for v in _versions(client, name) if (v.tags or {}).get(names.TAG_TEACHER_SHA) == digest]
    if found:
        client.set_registered_model_alias(name, alias, found[0].version)
        return str(ModelRef(name, alias=alias))

    experiment_id = ensure_experiment(client, names.TEACHER_EXPERIMENT,
                                      "Teacher checkpoints registered for data-free distillation. Each run holds "
                                      "one checkpoint file (weights-only) and its SHA-256.")
    tags = {**standard_tags("python -m rdskd_dist (register_teacher)"), names.TAG_RUN_TYPE: "teacher",
            names.TAG_DATASET: dataset, names.TAG_TEACHER_ARCH: arch, names.TAG_TEACHER_SHA: digest}
    run = client.create_run(experiment_id, run_name=f"teacher-{dataset}-{arch}-{digest[:8]}", tags=tags)
    run_id = run.info.run_id
    try:
        acc = meta.get("test_accuracy")
        client.log_batch(run_id, params=_params({"dataset": dataset, "arch": arch, "file": path.name,
                                                 "sha256": digest, **{f"arch.{k}": v for k, v in meta["arch"].items()}}),
                         metrics=_metrics({"test_accuracy": acc} if acc is not None else {}))
        client.log_artifact(run_id, str(path), "teacher")
        source = f"runs:/{run_id}/teacher"
        register_version(client, name, source=source, run_id=run_id, alias=alias,
                         tags={names.TAG_TEACHER_SHA: digest, names.TAG_DATASET: dataset,
                               names.TAG_TEACHER_ARCH: arch, "file": path.name},
                         description=f"{arch} teacher for {dataset}, SHA-256 {digest}",
                         model_description=f"Teacher networks ({arch}) trained on {dataset}: the source of data-free "
                                           "distillation runs. Load with --teacher models:/NAME@ALIAS.")
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.raw.set_terminated(run_id, "FAILED")
        raise
    return str(ModelRef(name, alias=alias))


def download_version(uri: str, ref: ModelRef, version, dst: Optional[str | os.PathLike] = None) -> Path:
    """The artifacts of a model version in a local folder (`dst`, else a new temporary folder)."""
    import mlflow.artifacts

    client = RetryingClient(uri)
    dst = Path(dst) if dst else Path(tempfile.mkdtemp(prefix=f"rdskd-{ref.name}-v{version.version}-"))
    dst.mkdir(parents=True, exist_ok=True)
    with use_tracking_uri(uri):
        local = client.call(mlflow.artifacts.download_artifacts, artifact_uri=f"models:/{ref.name}/{version.version}",
                            dst_path=str(dst), what="download_artifacts")
    return Path(local)


def resolve_teacher_uri(uri: str, tracking_uri: Optional[str] = None,
                        dst: Optional[str | os.PathLike] = None) -> str:
    """`models:/NAME@ALIAS` (or /VERSION) of a registered teacher -> the local path of its checkpoint.

    Downloads the version's artifact and checks its SHA-256 against the version's tag; the file is
    later loaded weights-only like any teacher checkpoint.
    """
    from rdskd_dist.files import sha256_file

    ref = parse_models_uri(uri)
    tracking = resolve_tracking_uri(tracking_uri, existing=True)  # read-only: never creates an empty store
    client = RetryingClient(tracking)
    version = get_version(client, ref)
    folder = download_version(tracking, ref, version, dst)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".sha256"))
    if len(files) != 1:
        raise UserError(f"{uri} (version {version.version}) holds {len(files)} files, expected one teacher checkpoint")
    expected = (version.tags or {}).get(names.TAG_TEACHER_SHA)
    digest = sha256_file(files[0])
    if expected and digest != expected:
        raise UserError(f"{uri} downloaded with SHA-256 {digest}, but the registry records {expected}; refusing it")
    return str(files[0])


def _params(values: dict) -> list:
    from mlflow.entities import Param

    return [Param(k, str(v)[:6000]) for k, v in values.items()]


def _metrics(values: dict, step: int = 0) -> list:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in values.items()]


def _versions(client: RetryingClient, name: str) -> list:
    from mlflow.exceptions import MlflowException

    try:
        return list(client.search_model_versions(f"name='{name}'"))
    except MlflowException as exc:
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise
