"""Helpers shared by the benchmark scripts: hardware description and result files."""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from rdskd_dist.files import atomic_write_json, atomic_write_text


def hardware() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from rdskd_dist.engine.precision import native_bf16

    # "AMD EPYC" alone names CPUs with and without AVX-512 BF16: say what this one computes bf16 with
    info = {"cpu": cpu, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": native_bf16(torch.device("cpu")),
            "torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def write_results(out_dir: Path, name: str, payload: dict[str, Any], markdown: str) -> None:
    payload = {"command": command_line(), "hardware": hardware(),
               "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"), **payload}
    atomic_write_json(payload, out_dir / f"{name}.json")
    hw = payload["hardware"]
    header = (f"Command: `{payload['command']}`  \nHardware: {hw['cpu']} ({hw['cpu_capability']}, "
              f"{'native' if hw['native_bf16'] else 'no native'} bf16), {hw['cpus']} CPUs, torch {hw['torch']}"
              f"{', GPU ' + hw['gpu'] if 'gpu' in hw else ''}  \nFinished: {payload['finished']}\n\n")
    atomic_write_text(header + markdown, out_dir / f"{name}.md")
