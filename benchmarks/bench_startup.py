"""Start-up cost of a run: CPU-seconds and wall time until the first training step has finished.

Runs ``python -m care_verl.main +recipe=<recipe> trainer.total_training_steps=1`` as a user would,
samples the whole process tree every 0.2 s (driver, Ray's GCS/raylet/dashboard, every Ray worker)
and reports, at the moment the first step's metrics line is written:

- ``cpu_s``: CPU-seconds (user + system) spent by all processes of the run so far;
- ``wall_s``: seconds since launch;
- ``procs``: how many processes the run had started; ``actors``: the Ray actors among them.

On a 2-core machine the start-up is CPU-bound (each Ray worker imports verl and torch), so
``cpu_s`` is the number to compare; it moves less than wall time when the machine is shared.
``--repos A,B`` runs the same command from two checkouts (e.g. the main checkout and a git
worktree), interleaved ``--pairs`` times, so a change is measured against its base in one run:

    .venv/bin/python benchmarks/bench_startup.py --repos /work/main,/work/wt --pairs 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def first_step_written(metrics: Path) -> bool:
    if not metrics.exists():
        return False
    for line in metrics.read_text().splitlines():
        try:
            if "timing_s/step" in json.loads(line).get("data", {}):
                return True
        except json.JSONDecodeError:
            continue  # a line being written
    return False


def measure(repo: Path, recipe: str, extra: list[str]) -> dict:
    """One run from checkout ``repo``; the numbers at its first finished step."""
    run_dir = Path(tempfile.mkdtemp(prefix="bench_startup_"))
    cmd = [sys.executable, "-m", "care_verl.main", f"+recipe={recipe}", "trainer.total_training_steps=1",
           "trainer.val_before_train=false", "trainer.test_freq=-1", "trainer.save_freq=-1",
           f"run.dir={run_dir}", *extra]
    env = {**os.environ, "PYTHONPATH": str(repo)}  # the checkout's code before any installed copy
    log = open(run_dir / "stdout.log", "w")  # a file, not a pipe: nobody drains a pipe while sampling
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(proc.pid)
    cpu: dict[int, float] = {}
    names: dict[int, str] = {}
    result = None
    while proc.poll() is None:
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                cpu[p.pid] = max(cpu.get(p.pid, 0.0), t.user + t.system)
                names[p.pid] = " ".join(p.cmdline())[:80]  # a Ray worker renames itself once it holds an actor
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        if result is None and first_step_written(run_dir / "metrics.jsonl"):
            by_name: dict[str, float] = {}
            for pid, n in names.items():
                key = n.split()[0].split(".")[0] if n.startswith("ray::") else ("dashboard" if "dashboard" in n else
                                                                                 Path(n.split()[0]).name)
                by_name[key] = by_name.get(key, 0.0) + cpu.get(pid, 0.0)
            actors = sorted(n.split()[0].split(".")[0] for n in names.values() if n.startswith("ray::") and "IDLE" not in n)
            result = {"cpu_s": round(sum(cpu.values()), 1), "wall_s": round(time.perf_counter() - start, 1),
                      "procs": len(cpu), "actors": actors,
                      "cpu_by_process": {k: round(v, 1) for k, v in sorted(by_name.items(), key=lambda kv: -kv[1])}}
        time.sleep(0.2)
    log.close()
    if proc.returncode != 0 or result is None:
        print((run_dir / "stdout.log").read_text()[-4000:])
        raise SystemExit(f"run from {repo} failed (exit {proc.returncode})")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", default=str(REPO), help="comma list of checkouts to run, interleaved")
    parser.add_argument("--pairs", type=int, default=2, help="rounds over --repos")
    parser.add_argument("--recipe", default="tiny_cpu_care")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    repos = [Path(r).resolve() for r in args.repos.split(",") if r]
    rows: dict[Path, list[dict]] = {r: [] for r in repos}
    for i in range(args.pairs):
        for repo in repos:
            r = measure(repo, args.recipe, args.overrides)
            rows[repo].append(r)
            print(f"[{i + 1}/{args.pairs}] {repo}: cpu {r['cpu_s']} s, wall {r['wall_s']} s, {r['procs']} processes, "
                  f"actors {', '.join(r['actors'])}", flush=True)
            print("    cpu-s by process: " + ", ".join(f"{k} {v}" for k, v in r["cpu_by_process"].items() if v >= 0.5),
                  flush=True)
    for repo, rs in rows.items():
        cpu = sum(r["cpu_s"] for r in rs) / len(rs)
        wall = sum(r["wall_s"] for r in rs) / len(rs)
        print(f"{repo}: mean to first step: cpu {cpu:.1f} s, wall {wall:.1f} s over {len(rs)} runs")


if __name__ == "__main__":
    main()
