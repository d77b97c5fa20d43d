"""Every cluster config parses, runs the real entrypoint, names spec files that exist and pins Ray consistently."""

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAMLS = sorted((ROOT / "cluster").glob("*.yaml"))
RAY_PIN = re.search(r'"ray\[[^\]]+\]>=([\d.]+),<', (ROOT / "pyproject.toml").read_text()).group(1)


def _strings(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)
    elif isinstance(node, str):
        yield node


@pytest.mark.parametrize("path", CLUSTER_YAMLS, ids=lambda p: p.name)
def test_cluster_yaml_parses_and_is_consistent(path):
    docs = list(yaml.safe_load_all(path.read_text()))
    assert docs and all(isinstance(d, dict) for d in docs)
    text = "\n".join(s for d in docs for s in _strings(d)) + "\n" + path.read_text()
    for module in re.findall(r"python -m (rdskd_dist(?:\.\w+)*)", text):
        assert importlib.util.find_spec(module) is not None, module
    for spec in re.findall(r"tune/[\w.-]+\.yaml", text):
        assert (ROOT / spec).is_file(), spec
    for version in re.findall(r'rayVersion:\s*"?([\d.]+)', path.read_text()) + re.findall(r"ray:([\d.]+)-", path.read_text()):
        assert version.startswith(RAY_PIN.rsplit(".", 1)[0]), (version, RAY_PIN)
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        assert "RAY_AUTH_MODE" not in line  # token authentication stays on
        if "dashboard-host" in line:
            assert "127.0.0.1" in line


def test_kuberay_manifests_keep_the_dashboard_private():
    for name in ("kuberay-raycluster.yaml", "kuberay-rayjob.yaml"):
        doc = yaml.safe_load((ROOT / "cluster" / name).read_text())
        spec = doc["spec"].get("rayClusterSpec", doc["spec"])
        assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"
        assert spec["rayVersion"].startswith(RAY_PIN)


def test_rayjob_entrypoint_is_the_tune_module():
    doc = yaml.safe_load((ROOT / "cluster" / "kuberay-rayjob.yaml").read_text())
    assert doc["spec"]["entrypoint"].startswith("python -m rdskd_dist.tune --spec tune/")


def test_sweep_command_lines_in_configs_parse():
    """`python -m rdskd_dist.tune ...` lines in the cluster configs use real options and valid --storage URIs."""
    from rdskd_dist.tune.__main__ import build_parser
    from rdskd_dist.tune.storage import check_storage

    options = {s for a in build_parser()._actions for s in a.option_strings}
    for path in sorted((ROOT / "cluster").iterdir()):
        text = re.sub(r"\\\n\s*#?\s*", " ", path.read_text())  # join continued shell lines
        text = re.sub(r">-\n\s+", "", text).replace("\n    --", " --")  # and folded YAML entrypoints
        for line in re.findall(r"python -m rdskd_dist\.tune[^\n]*", text):
            for flag in re.findall(r"\s(--[\w-]+)", line):
                assert flag in options, (path.name, flag)
            for uri in re.findall(r"--storage\s+(\S+)", line):
                assert check_storage(uri) == uri, (path.name, uri)
