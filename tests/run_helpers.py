"""Launching ``python -m care_verl.main`` from tests, and the test reward functions' paths.

Import from here (``from run_helpers import run_main``), not from ``conftest``: several
``tests/*/conftest.py`` share that module name.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUMBING_REWARD = REPO / "tests" / "fixtures" / "digit_share_reward.py"
MIXED_GROUPS_REWARD = REPO / "tests" / "fixtures" / "mixed_groups_reward.py"


def run_main(args: list[str], run_dir: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m care_verl.main`` in a subprocess, as a user would.

    Every actor forward pass is logged to ``run_dir/forwards.log`` ($CARE_VERL_FORWARD_LOG); the CARE
    trainer dumps each step's rows under ``run_dir/rows`` ($CARE_VERL_ROW_DUMP, see tests/e2e/row_checks.py).
    """
    cmd = [sys.executable, "-m", "care_verl.main", *args, f"run.dir={run_dir}"]
    env = dict(os.environ, CARE_VERL_FORWARD_LOG=str(Path(run_dir) / "forwards.log"),
               CARE_VERL_ROW_DUMP=str(Path(run_dir) / "rows"), **(env or {}))
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    (Path(run_dir) / "stdout.log").write_text(proc.stdout + "\n" + proc.stderr)
    return proc
