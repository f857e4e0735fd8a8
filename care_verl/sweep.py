"""``python -m care_verl.main -m KEY=A,B ...``: a Hydra multirun, one training run after another.

The grid is Hydra's basic sweeper's (its own override parser and ``split_arguments``): comma
lists, ``range(...)``, ``choice(...)`` and ``glob(...)`` expand, every combination is one job, in
Hydra's order. Each job is a separate ``python -m care_verl.main`` process (a fresh Ray per run),
run in ``<sweep dir>/<its swept overrides>``, e.g. ``runs/tiny_cpu_care/care.selector=random``,
where the sweep dir is the ``run.dir`` the non-swept overrides give.

Every job's config is composed and checked before the first one starts, so a typo in the last
point fails at once (exit 2, naming the job). A job that exits 0 leaves ``sweep_job.json`` with
``"status": "finished"``; rerunning the same command skips those (a half-done sweep resumes; a
failed or interrupted job runs again and resumes from its own last checkpoint). At the end
``sweep.md`` and ``sweep.json`` in the sweep dir hold one row per job: status, steps, wall time
and the last logged training reward and validation metrics; runs with an evaluation summary
also get the benchmark table of :mod:`care_verl.launch.aggregate`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

JOB_FILE = "sweep_job.json"
SUMMARY_MD = "sweep.md"
SUMMARY_JSON = "sweep.json"
#: Last-step metrics shown in the summary, besides every ``val-core/*`` key.
TRAIN_METRICS = ("critic/score/mean", "critic/rewards/mean")


@dataclass(frozen=True)
class Job:
    num: int
    overrides: tuple[str, ...]  # every override of this job (fixed and swept), in command-line order
    swept: tuple[str, ...]  # the swept ones: they name the job's directory

    @property
    def name(self) -> str:
        return ",".join(self.swept).replace("/", "_") or "default"


def expand(overrides: list[str]) -> list[Job]:
    """The jobs of a sweep, in Hydra's basic-sweeper order (raises Hydra's errors on bad syntax)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    swept_keys = {o.get_key_element() for o in parsed if o.is_sweep_override()}
    grid = BasicSweeper.split_arguments(parsed, None)[0]
    jobs = []
    for num, combo in enumerate(grid):
        swept = tuple(o for o in combo if o.split("=", 1)[0] in swept_keys)
        jobs.append(Job(num, tuple(combo), swept))
    return jobs


def fixed_overrides(overrides: list[str]) -> list[str]:
    """The overrides that are not sweeps (they decide the sweep dir)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return [text for text, o in zip(overrides, parsed) if not o.is_sweep_override()]


def run_dir_override(path: Path) -> str:
    """``run.dir='PATH'``, quoted: job directories contain ``=`` and ``,`` (Hydra's override grammar)."""
    text = str(path).replace("'", "\\'")
    return f"run.dir='{text}'"


def is_finished(job_dir: Path) -> bool:
    try:
        return json.loads((job_dir / JOB_FILE).read_text()).get("status") == "finished"
    except (OSError, ValueError):
        return False


def last_metrics(job_dir: Path) -> tuple[int | None, dict]:
    """(last step, its training reward and every validation metric logged at any step, last value wins)."""
    from care_verl.adapter.tools.metrics import read_metrics

    try:
        entries = read_metrics(job_dir)
    except (OSError, ValueError):
        return None, {}
    if not entries:
        return None, {}
    shown = {k: entries[-1]["data"][k] for k in TRAIN_METRICS if k in entries[-1]["data"]}
    for entry in entries:
        shown.update({k: v for k, v in entry["data"].items() if k.startswith("val-core/")})
    return entries[-1]["step"], shown


def summarize(sweep_dir: Path, jobs: list[Job]) -> str:
    """Write ``sweep.md`` / ``sweep.json`` in ``sweep_dir``; returns the markdown."""
    rows = []
    for job in jobs:
        job_dir = sweep_dir / job.name
        try:
            record = json.loads((job_dir / JOB_FILE).read_text())
        except (OSError, ValueError):
            record = {"status": "not run"}
        step, metrics = last_metrics(job_dir)
        rows.append({"job": job.num, "overrides": ",".join(job.swept) or "(none)", "run_dir": str(job_dir),
                     "status": record.get("status"), "wall_s": record.get("wall_s"), "step": step, **metrics})
    columns = ["job", "overrides", "status", "step", "wall_s"]
    columns += sorted({k for r in rows for k in r} - set(columns) - {"run_dir"})

    def cell(value) -> str:
        if value is None:
            return "–"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    evaluated = [sweep_dir / j.name for j in jobs if _has_eval(sweep_dir / j.name)]
    if evaluated:
        from care_verl.launch.aggregate import build_rows, markdown_table

        text += "\nBenchmarks (care_verl.launch.aggregate):\n\n" + markdown_table(build_rows(evaluated)) + "\n"
    (sweep_dir / SUMMARY_MD).write_text(text)
    (sweep_dir / SUMMARY_JSON).write_text(json.dumps({"jobs": rows}, indent=1))
    return text


def _has_eval(run_dir: Path) -> bool:
    from care_verl.launch.aggregate import find_summary

    return find_summary(run_dir) is not None


def run_job(job: Job, job_dir: Path) -> int:
    """One job as its own ``python -m care_verl.main`` process; records its status in ``sweep_job.json``."""
    job_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "care_verl.main", *job.overrides, run_dir_override(job_dir)]
    start = time.monotonic()
    (job_dir / JOB_FILE).write_text(json.dumps({"status": "running", "overrides": list(job.overrides)}))
    rc = subprocess.call(cmd, env=dict(os.environ, CARE_VERL_SWEEP_JOB=str(job.num)))
    record = {"status": "finished" if rc == 0 else f"failed (exit {rc})", "rc": rc,
              "wall_s": round(time.monotonic() - start, 1), "overrides": list(job.overrides), "command": cmd}
    (job_dir / JOB_FILE).write_text(json.dumps(record, indent=1))
    return rc


def run_sweep(overrides: list[str], compose, build_config) -> int:
    """Check every job's config, run the unfinished ones in order, write the summary.

    ``compose(overrides)`` composes a config; ``build_config(overrides)`` also prepares and
    validates it; both raise ``ConfigError``. Returns 0 when every job finished, else 1.
    """
    from care_verl.adapter.entry.validate import ConfigError

    try:
        jobs = expand(overrides)
        fixed = fixed_overrides(overrides)
    except Exception as exc:  # Hydra's override grammar errors
        raise ConfigError(str(exc).strip()) from None
    sweep_dir = Path(compose(fixed).run.dir).expanduser().resolve()
    for job in jobs:
        try:
            build_config([*job.overrides, run_dir_override(sweep_dir / job.name)])
        except ConfigError as exc:
            raise ConfigError(f"sweep job #{job.num} ({','.join(job.swept)}): {exc}") from None
    print(f"care_verl: sweep of {len(jobs)} runs in {sweep_dir}", flush=True)
    failed = []
    for job in jobs:
        job_dir = sweep_dir / job.name
        if is_finished(job_dir):
            print(f"care_verl: [sweep] #{job.num} {job.name}: finished before, skipped", flush=True)
            continue
        print(f"care_verl: [sweep] #{job.num} {job.name}: starting in {job_dir}", flush=True)
        if run_job(job, job_dir) != 0:
            failed.append(job)
    text = summarize(sweep_dir, jobs)
    print(f"\ncare_verl: sweep summary ({sweep_dir / SUMMARY_MD}):\n{text}", flush=True)
    if failed:
        print(f"care_verl: {len(failed)} of {len(jobs)} runs failed: {', '.join(j.name for j in failed)}; "
              "rerun the same command to retry them (finished runs are skipped)", file=sys.stderr)
        return 1
    return 0
