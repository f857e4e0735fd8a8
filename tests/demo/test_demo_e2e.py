"""A shortened demo, end to end: ``python -m care_verl.demo`` with tiny budgets.

verl's SFT trainer for 20 steps on 64 rows, 20 % of them reflection rows (evaluated at 10 and 20, so
it stops by the step budget and keeps the closest checkpoint), then 2 CARE steps through ``python -m care_verl.main`` from that model,
then the plots. The RL stage uses the mixed-groups plumbing reward (tests/fixtures) so a barely
trained model still yields anchors, hard negatives and RGR repairs for the plots.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MIXED_GROUPS_REWARD = REPO / "tests" / "fixtures" / "mixed_groups_reward.py"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("demo") / "run"
    cmd = [sys.executable, "-m", "care_verl.demo", "--run-dir", str(run_dir), "--quiet",
           "--sft-max-steps", "20", "--sft-eval-every", "10", "--sft-n-train", "64", "--sft-heldout", "16",
           "--rl-steps", "2", "--test-freq", "2", "--",
           "data.train_batch_size=4", "actor_rollout_ref.rollout.n=4", "actor_rollout_ref.actor.ppo_mini_batch_size=4",
           f"reward.custom_reward_function.path={MIXED_GROUPS_REWARD}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, env=dict(os.environ))
    return proc, run_dir


def _png(path: Path) -> None:
    from PIL import Image

    assert path.exists(), path
    assert path.stat().st_size > 10_000, (path, path.stat().st_size)
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.size[0] >= 600 and im.size[1] >= 300


def test_demo_finishes(demo_run):
    proc, run_dir = demo_run
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-5000:])
    # --quiet drops the progress bars only: the stage lines and the results are printed
    assert "[demo] held-out greedy accuracy:" in proc.stdout and "Plots:" in proc.stdout


def test_sft_stage_used_verl_and_saved_an_hf_model(demo_run):
    _, run_dir = demo_run
    result = json.loads((run_dir / "sft" / "sft_result.json").read_text())
    assert result["step"] in (10, 20)
    assert [e["step"] for e in result["evals"]] == [10, 20]
    for e in result["evals"]:
        assert 0.0 <= e["greedy_acc"] <= 1.0 and 0.0 <= e["sampled_acc"] <= 1.0
    model = Path(result["model_dir"])
    assert (model / "config.json").exists() and (model / "model.safetensors").exists()
    sft_metrics = [json.loads(x) for x in (run_dir / "sft" / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert len({m["step"] for m in sft_metrics}) >= 10
    assert all("train/loss" in m["data"] for m in sft_metrics)
    assert sft_metrics[-1]["data"]["train/loss"] < sft_metrics[0]["data"]["train/loss"]


def test_sft_data_holds_the_reflection_rows_with_the_rl_cue(demo_run):
    """20 % of the 64 SFT rows (the default share) are wrong reasoning + the RL stage's care.rgr.cue +
    corrected reasoning; the rest are plain traces (tests/demo/test_sft_reflection.py checks the tokens)."""
    import pandas as pd

    from care_verl.demo.stages import rl_repair_cue

    _, run_dir = demo_run
    df = pd.read_parquet(run_dir / "sft" / "data" / "sft_train.parquet")
    assert len(df) == 64
    context = [str(c) for c in df["response_context"]]
    reflect = [i for i, c in enumerate(context) if c]
    assert len(reflect) == int(64 * 0.2)
    cue = rl_repair_cue("demo_cpu", [])
    for i in reflect:
        content = df["messages"].iloc[i][1]["content"]
        assert context[i].endswith(cue) and content.startswith(context[i]) and content.count(cue) == 1
    assert all(cue not in df["messages"].iloc[i][1]["content"] for i in range(64) if i not in reflect)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["sft_reflect_share"] == 0.2


def test_rl_stage_metrics_checkpoint_and_events(demo_run):
    _, run_dir = demo_run
    rl = run_dir / "rl"
    metrics = [json.loads(x) for x in (rl / "metrics.jsonl").read_text().splitlines() if x.strip()]
    steps = sorted({m["step"] for m in metrics})
    assert steps == [0, 1, 2]
    last = [m for m in metrics if m["step"] == 2][-1]["data"]
    assert any(k.startswith("val-core/") and "/acc/" in k for k in last)
    train = [m["data"] for m in metrics if m["step"] > 0]
    assert all("care/mean_k_prime" in d and "rgr/eligible_groups" in d for d in train)
    assert any(d.get("rgr/generated", 0) > 0 for d in train)
    assert (rl / "checkpoints" / "global_step_2" / "actor").is_dir()
    events = [json.loads(x) for x in (rl / "care_events.jsonl").read_text().splitlines() if x.strip()]
    assert {e["step"] for e in events} == {1, 2}
    assert any(1 in e["roles"] for e in events)  # anchors exist for the signature plot
    assert sorted((rl / "rollouts").glob("*.jsonl"))


def test_plots_and_summary(demo_run):
    _, run_dir = demo_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["plots"]) == {"curves", "signature", "rgr"}
    for path in summary["plots"].values():
        _png(Path(path))
    assert summary["rl"]["signature"]["n_anchor"] > 0
    assert summary["rl"]["rgr"]["generated"] > 0
    assert summary["timings_s"]["total_s"] > summary["timings_s"]["rl_s"] > 0
    # the numbers the demo prints: held-out start -> mean of the last two evaluations, and the aim
    held = summary["rl"]["held_out"]
    assert held["steps"] == [0, 2]
    for key in ("start", "final", "best", "last_k_mean"):
        assert 0.0 <= held[key] <= 1.0, key
    assert held["last_k_mean"] == pytest.approx((held["start"] + held["final"]) / 2)
    target = summary["target"]
    assert target["end_last2_mean"] == held["last_k_mean"] and target["start"] == held["start"]
    assert target["met"] == (held["last_k_mean"] >= held["start"] + 0.2 and held["last_k_mean"] >= 0.55)
    assert summary["rl_steps"] == 2 and summary["sft"]["step"] in (10, 20)
