"""Shared helpers for the launch tests: paths, linters from the virtual environment, schemas."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SBATCH = REPO / "launch" / "slurm" / "care.sbatch"
RAYJOB = REPO / "launch" / "k8s" / "rayjob.yaml"
PVC = REPO / "launch" / "k8s" / "pvc.yaml"
RAYJOB_SCHEMA = HERE / "schemas" / "rayjob-ray-v1.json"
PLUMBING_REWARD = REPO / "tests" / "fixtures" / "digit_share_reward.py"
#: The Kubernetes version whose schemas validate the pod templates and the PVC (kubernetes-validate ships them).
K8S_VERSION = "1.33.0"


def tool(name: str, pip_name: str) -> str:
    """Path of a linter installed by pip into this environment (or on PATH); skip the test if absent."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        pytest.skip(f"{name} not installed (pip install {pip_name}; part of the test extra)")
    return found


def run_py(*args: str, env: dict | None = None, timeout: float = 120, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """``python ARGS`` with this interpreter, text output captured."""
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env or dict(os.environ), capture_output=True, text=True, timeout=timeout)


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
