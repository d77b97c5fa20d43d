"""Joining a Ray cluster or starting a local Ray: fail fast on a bad address, keep local servers on loopback.

* `parse_ray_address(text)`: `local`, `auto`, `HOST:PORT` (a cluster's GCS) or `ray://HOST:PORT`
  (Ray Client); anything else is a one-line `UserError`.
* `check_ray_address(text)`: the same, plus one gRPC call to HOST:PORT that must be answered by
  Ray within a few seconds: `ray.init` itself retries an unreachable GCS for many minutes.
* `connect_ray(address, **local_options)`: join `address` (or `$RAY_ADDRESS`), else start a local
  Ray whose every server (GCS, raylet, workers, agents, dashboard) listens on 127.0.0.1 only.
* `init_ray(address, ...)`: the project's one start-up path (the train CLI, sweeps, benchmarks):
  quiet environment defaults, then `connect_ray`.

Nothing here imports ray until a connection is made.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional

from rdskd_dist.errors import UserError

CONNECT_TIMEOUT_S = 3.0
LOCAL, AUTO = "local", "auto"
# Ray's switch for its macOS/Windows single-node behaviour (see `_loopback_only`).
SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+):(?P<port>\d{1,5})$")
_FORMS = "use HOST:PORT (the head's GCS, e.g. 10.0.0.5:6379), ray://HOST:10001, auto or local"
# Set (unless the environment already has them) before any Ray start: no usage reporting, no
# migration banners.
QUIET_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0"}
# Set to 0 in the environment of a Ray that serves no state API (a local Ray started without its dashboard,
# as `rdskd_dist.tune` starts one; its raylet passes the variable on to every worker): Ray Train runs then
# start no placement-group cleaner, which needs that API (`ray_train.driver._idle_helper_callbacks`).
PG_CLEANER_ENV = "RDSKD_TRAIN_PG_CLEANER"
# The raylet warns when a node holds more than 4x as many worker processes as it has CPUs ("N PYTHON
# worker processes have been started ... 4x the maximum expected startup concurrency"). A Ray Train run
# inside a Tune trial is 5 actor processes (trial, report queue, Train controller, synchronization actor, the
# Train worker; Ray's own TorchTrainer adds a dataset manager and a placement-group cleaner), mostly at 0 or 0.01
# CPU: on a 2-CPU machine two concurrent trials always pass that mark while nothing is wrong, so a quiet start
# drops that one line.
POOL_WARNING = "worker processes have been started on node"


@dataclass(frozen=True)
class RayAddress:
    text: str  # what ray.init gets
    host: Optional[str] = None  # None for `local` / `auto`
    port: Optional[int] = None

    @property
    def is_local(self) -> bool:
        return self.text == LOCAL


def parse_ray_address(text: str) -> RayAddress:
    """A Ray address, validated by form only (no connection)."""
    value = (text or "").strip()
    if value in (LOCAL, AUTO):
        return RayAddress(value)
    if value.startswith(("http://", "https://")):
        raise UserError(f"Ray address {value!r} is a dashboard URL (for `ray job submit --address`); "
                        f"to join a cluster {_FORMS}")
    match = _HOST_PORT.match(value.removeprefix("ray://"))
    if not match:
        raise UserError(f"malformed Ray address {value!r}; {_FORMS}")
    port = int(match["port"])
    if not 0 < port < 65536:
        raise UserError(f"malformed Ray address {value!r}: port {port} out of range; {_FORMS}")
    return RayAddress(value, match["host"].strip("[]"), port)


def check_ray_address(text: str, timeout_s: float = CONNECT_TIMEOUT_S) -> RayAddress:
    """Parse `text` and, for HOST:PORT forms, make sure a Ray cluster answers there within `timeout_s`.

    One gRPC call (the GCS's GetClusterId; for `ray://` the Ray Client server's ping): OK or an
    authentication refusal means Ray is there. A TCP connect alone is not enough: a proxy or another
    server may accept the connection, and `ray.init` would then wait for many minutes.
    """
    address = parse_ray_address(text)
    if address.host is None:
        return address
    import grpc

    code, details = _ping(address, timeout_s)
    if code in (grpc.StatusCode.OK, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return address
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        why = "timed out" if code == grpc.StatusCode.DEADLINE_EXCEEDED else _short_reason(details)
        raise UserError(f"Ray cluster at {address.text} is unreachable ({why}); start it (ray start --head) "
                        "or pass another --address / $RAY_ADDRESS; nothing was run")
    what = "Ray Client server" if address.text.startswith("ray://") else "Ray cluster (GCS)"
    raise UserError(f"no {what} answers at {address.text} (gRPC {code.name.lower()}); check the host and port "
                    "(the head's GCS port is 6379 by default, Ray Client's 10001); nothing was run")


def _ping(address: RayAddress, timeout_s: float):
    """(grpc.StatusCode, details) of one cheap call to the GCS or the Ray Client server."""
    import grpc

    target = f"[{address.host}]:{address.port}" if ":" in address.host else f"{address.host}:{address.port}"
    with grpc.insecure_channel(target) as channel:
        try:
            if address.text.startswith("ray://"):
                from ray.core.generated import ray_client_pb2, ray_client_pb2_grpc

                request = ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING)
                ray_client_pb2_grpc.RayletDriverStub(channel).ClusterInfo(request, timeout=timeout_s)
            else:
                from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

                gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                    gcs_service_pb2.GetClusterIdRequest(), timeout=timeout_s)
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def _short_reason(details: str) -> str:
    """'connection refused' out of gRPC's 'failed to connect to all addresses; last error: ...'."""
    last = details.rsplit(":", 1)[-1].strip(" []").lower()
    return last or "no answer"


def requested_address(address: Optional[str]) -> Optional[str]:
    """The address to join: the argument, else $RAY_ADDRESS; None (or `local`) starts a local Ray."""
    return (address or os.environ.get("RAY_ADDRESS") or "").strip() or None


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """While a local Ray starts: node IP 127.0.0.1 and every server bound to loopback.

    On Linux Ray registers even a single-node instance under the machine's interface address, and
    its gRPC servers then listen on all interfaces; `_node_ip_address="127.0.0.1"` does not help,
    Ray rewrites loopback to that address (`services.resolve_ip_for_localhost`). Ray's macOS/Windows
    behaviour (node IP 127.0.0.1, servers on 127.0.0.1) is selected by `ENABLE_RAY_CLUSTER`, read
    by this driver from `ray_constants` and by every process Ray spawns from the environment
    variable. Both are restored afterwards: the started processes keep it, and a later join of a
    real cluster from this process is unaffected.
    """
    import ray._private.ray_constants as ray_constants

    saved_env, saved_flag = os.environ.get(SINGLE_NODE_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_NODE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(SINGLE_NODE_ENV, None)
        else:
            os.environ[SINGLE_NODE_ENV] = saved_env


def connect_ray(address: Optional[str] = None, *, num_cpus: Optional[int] = None, include_dashboard: bool = False,
                **init_options: Any) -> bool:
    """Join `address` / $RAY_ADDRESS (checked first), or start a local Ray on loopback.

    Returns True when this call connected (started or joined: the caller then owns `ray.shutdown()`),
    False when Ray was already initialised.
    `init_options` go to `ray.init` either way (`log_to_driver`, `logging_level`, ...).
    """
    import ray

    if ray.is_initialized():
        return False
    wanted = requested_address(address)
    target = check_ray_address(wanted) if wanted else RayAddress(LOCAL)
    if not target.is_local:
        try:
            ray.init(address=target.text, **init_options)
        except (ConnectionError, ValueError) as exc:  # e.g. `auto` with no running cluster
            raise UserError(f"cannot join the Ray cluster at {target.text}: {exc}") from None
        return True
    with _loopback_only():
        ray.init(address=LOCAL, num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=include_dashboard,
                 dashboard_host="127.0.0.1", **init_options)
    return True


def init_ray(address: Optional[str] = None, *, num_cpus: Optional[int] = None, include_dashboard: bool = True,
             verbose: bool = True, env: Optional[Mapping[str, str]] = None,
             local_env: Optional[Mapping[str, str]] = None) -> bool:
    """Join `address` / `$RAY_ADDRESS` (checked within seconds), else start a local Ray on 127.0.0.1.
    True when this call connected (the caller then owns `ray.shutdown()`).

    `env` (and, for a local Ray, `local_env`) are set as defaults before the start, after
    `QUIET_ENV`: a Ray started here passes them on to its raylet and workers. The local instance
    has all of this machine's CPUs (or `num_cpus`). Its dashboard (on 127.0.0.1) costs about 2 s
    at start but serves the state API that Ray Train's placement-group cleaner polls; without it
    that cleaner logs a warning every second. `verbose=False` keeps Ray's INFO lines, the workers'
    output and the raylet's pool-size warning off the driver's console.
    """
    local = requested_address(address) in (None, LOCAL)
    for key, value in {**QUIET_ENV, **(env or {}), **((local_env or {}) if local else {})}.items():
        os.environ.setdefault(key, value)
    if not verbose:
        _drop_pool_warning()
    return connect_ray(address, num_cpus=num_cpus, include_dashboard=include_dashboard, log_to_driver=verbose,
                       logging_level=logging.INFO if verbose else logging.WARNING)


def _drop_pool_warning() -> None:
    """Filter the raylet's worker-pool-size line (POOL_WARNING) out of what Ray prints on the driver."""
    try:
        import ray._private.worker as ray_worker

        original = ray_worker.print_to_stdstream
    except (ImportError, AttributeError):  # pragma: no cover - another Ray version: the line stays
        return
    if getattr(original, "rdskd_filtered", False):
        return

    def print_to_stdstream(data, ignore_prefix: bool):
        if data.get("pid") == "raylet":
            lines = [line for line in data.get("lines", []) if POOL_WARNING not in str(line)]
            if not lines:
                return None
            data = {**data, "lines": lines}
        return original(data, ignore_prefix)

    print_to_stdstream.rdskd_filtered = True
    ray_worker.print_to_stdstream = print_to_stdstream


__all__ = ["RayAddress", "parse_ray_address", "check_ray_address", "requested_address", "connect_ray", "init_ray",
           "CONNECT_TIMEOUT_S", "QUIET_ENV"]
