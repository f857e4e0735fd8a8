"""Wall time and peak memory of the 2-step ``tiny_cpu`` run (issue 2).

Runs ``python -m care_verl.main +recipe=tiny_cpu`` as a user would and samples, every 0.25 s,
the memory of the whole process tree (driver, raylet, Ray workers, rollout server): peak of the
summed PSS (proportional set size, which does not double count shared pages) and of the summed
RSS. Also reports the per-step times verl logged.

    .venv/bin/python benchmarks/bench_tiny_run.py [extra overrides...]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def tree_memory(root: psutil.Process) -> tuple[int, int, int]:
    """(sum PSS, sum RSS, number of processes) over ``root`` and all its descendants."""
    procs = [root, *root.children(recursive=True)]
    pss = rss = 0
    for p in procs:
        try:
            full = p.memory_full_info()
            pss += full.pss
            rss += full.rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return pss, rss, len(procs)


def main() -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="bench_tiny_run_"))
    cmd = [sys.executable, "-m", "care_verl.main", "+recipe=tiny_cpu", f"run.dir={run_dir}", *sys.argv[1:]]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = {"pss": 0, "rss": 0, "procs": 0}
    done = threading.Event()

    def sample():
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                pss, rss, n = tree_memory(root)
            except psutil.NoSuchProcess:
                break
            peak["pss"], peak["rss"], peak["procs"] = max(peak["pss"], pss), max(peak["rss"], rss), max(peak["procs"], n)
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        print(output[-5000:])
        raise SystemExit(f"run failed with exit code {proc.returncode}")
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    step_times = [round(s["data"]["timing_s/step"], 2) for s in steps]
    print(f"wall time: {wall:.1f} s for {len(steps)} steps (per-step timing_s/step: {step_times})")
    print(f"peak memory, whole process tree: PSS {peak['pss'] / 2**30:.2f} GiB, RSS {peak['rss'] / 2**30:.2f} GiB "
          f"({peak['procs']} processes at most)")


if __name__ == "__main__":
    main()
