"""Launching and killing whole training runs (driver, Ray daemons, workers) from a test."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def launch(args: list[str], run_dir: Path, env: dict | None = None, log_name: str = "launch.log") -> subprocess.Popen:
    """Start ``args`` in its own session, logging to ``run_dir/<log_name>`` (appended)."""
    log = open(Path(run_dir) / log_name, "ab")
    return subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)


def steps_logged(run_dir) -> set[int]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return set()
    return {json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()}


def run_processes(run_dir):
    """Every live process of that run, found by the run's metrics path in its environment
    (Ray daemons leave the driver's session; other runs' processes are never matched)."""
    import psutil

    marker = str(Path(run_dir) / "metrics.jsonl")
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("VERL_FILE_LOGGER_PATH") == marker:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def kill_leftovers(run_dir) -> None:
    """SIGKILL whatever of that run is still alive."""
    import psutil

    for p in run_processes(run_dir):
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    time.sleep(1)
