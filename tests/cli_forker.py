"""Runs the project's CLIs (`python -m rdskd_dist.X ...`) in processes forked from one that has already
imported torch, Ray and the project: the bad-input cases are each a second or less of CLI work behind
four seconds of imports, so one import per lane instead of one per case.

Protocol (one JSON object per line): in {"module", "argv", "cwd", "stdout", "stderr", "timeout_s"};
out {"returncode", "cpu_s", "wall_s"}. Each case runs in its own forked child, exactly as `python -m`
would run it (`runpy`, `sys.argv`, its own working directory, stdout and stderr to files); the child's
CPU time comes from os.wait4, and the child is killed by SIGALRM after timeout_s.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import time
import traceback

# What the CLIs import anyway: paid once here, shared by every forked child.
import torch  # noqa: F401
import ray  # noqa: F401
import ray.train  # noqa: F401
import ray.tune  # noqa: F401
import rdskd_dist.cli  # noqa: F401
import mlflow  # noqa: F401  (what pull imports; the entry modules themselves are left to runpy)
import rdskd_dist.tune.sweep  # noqa: F401


def run_child(request: dict) -> None:
    """In the forked child: become `python -m module argv...` and exit with its status."""
    signal.alarm(int(request["timeout_s"]))  # default action: the child dies, as under a killing timer
    os.chdir(request["cwd"])
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.argv = [request["module"], *request["argv"]]
    code = 0
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as stop:  # as the interpreter does: None is 0, a message is printed and is 1
        code = 0 if stop.code is None else stop.code
        if not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001  (what the interpreter would print for an uncaught exception)
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            run_child(request)
        _pid, status, usage = os.wait4(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status), "cpu_s": usage.ru_utime + usage.ru_stime,
                          "wall_s": time.perf_counter() - start}), flush=True)


if __name__ == "__main__":
    main()
