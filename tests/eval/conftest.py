"""Fixtures for the evaluation tests: benchmark files in the real schemas, and a verl checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from eval_fixtures import write_all  # noqa: E402

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def bench_files(tmp_path_factory) -> dict[str, str]:
    """``{benchmark: parquet path}`` for the six paper benchmarks (MATH-Vision under "mathvision")."""
    return write_all(tmp_path_factory.mktemp("bench_data"))


@pytest.fixture(scope="session")
def fsdp_checkpoint(tmp_path_factory, tiny_vl_path) -> Path:
    """A verl run's ``checkpoints`` folder holding global_step_3/actor, written by verl's own
    FSDPCheckpointManager from the tiny model with every weight shifted by +0.01."""
    root = tmp_path_factory.mktemp("run") / "checkpoints"
    actor = root / "global_step_3" / "actor"
    proc = subprocess.run(
        [sys.executable, str(HERE / "make_fsdp_checkpoint.py"), tiny_vl_path, str(actor), "0.01"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    (root / "latest_checkpointed_iteration.txt").write_text("3")
    return root


@pytest.fixture(scope="session")
def convert_dir(tmp_path_factory) -> Path:
    """Shared cache for converted checkpoints, so the conversion runs once per session."""
    return tmp_path_factory.mktemp("converted")
