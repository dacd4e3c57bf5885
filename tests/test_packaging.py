"""What each pip extra brings: a device installs only the backend it runs.

The requirement graph is resolved from the metadata of the installed distributions (the test
environment has ``[all]``), so the check needs no network and no second virtualenv.
"""

from __future__ import annotations

from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

BUILD_TIME = {"torch", "torchvision", "timm", "nncf", "onnxscript", "scikit-learn", "matplotlib"}


def _requires(name: str, extras: frozenset[str]) -> list[Requirement]:
    """Requirements of an installed distribution that apply with ``extras`` on this machine."""
    out = []
    for line in metadata.distribution(name).requires or []:
        req = Requirement(line)
        if req.marker is None:
            out.append(req)
            continue
        envs = [{"extra": e} for e in extras] or [{"extra": ""}]
        if any(req.marker.evaluate(env) for env in envs):
            out.append(req)
    return out


def closure(name: str, extras: frozenset[str]) -> set[str]:
    """Canonical names of every distribution ``name[extras]`` pulls in, itself excluded."""
    seen: set[str] = set()
    todo = [(name, extras)]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        dist, ex = todo.pop()
        if (dist, ex) in done:
            continue
        done.add((dist, ex))
        for req in _requires(dist, ex):
            child = canonicalize_name(req.name)
            if child != canonicalize_name(name):
                seen.add(child)
            todo.append((child, frozenset(req.extras)))
    return seen


@pytest.mark.parametrize("extra", ["onnx", "openvino", "video"])
def test_device_extras_pull_no_build_time_tools(extra):
    deps = closure("ftedge", frozenset({extra}))
    assert "numpy" in deps and "pillow" in deps
    assert not deps & BUILD_TIME, f"ftedge[{extra}] pulls {sorted(deps & BUILD_TIME)}"


def test_extras_name_their_backend():
    assert "onnxruntime" in closure("ftedge", frozenset({"onnx"}))
    assert "openvino" in closure("ftedge", frozenset({"openvino"}))
    assert {"torch", "timm"} <= closure("ftedge", frozenset({"train"}))
    assert {"onnx", "nncf", "onnxruntime"} <= closure("ftedge", frozenset({"export"}))
    everything = closure("ftedge", frozenset({"all"}))
    assert {"torch", "nncf", "onnxruntime", "openvino", "opencv-python-headless"} <= everything


def test_onnx_gpu_extra_uses_the_gpu_package():
    reqs = [r for r in _requires("ftedge", frozenset({"onnx-gpu"})) if r.marker is not None]
    assert [canonicalize_name(r.name) for r in reqs] == ["onnxruntime-gpu"]
