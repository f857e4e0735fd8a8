"""The comparison's statistics (closed-form values) and its plan / resume / time estimate (no training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from care_verl.demo import compare as C
from care_verl.demo import stats as S


@pytest.mark.parametrize("df,q", [(1, 12.706205), (2, 4.302653), (4, 2.776445), (10, 2.228139), (30, 2.042272)])
def test_t_quantile_matches_the_tables(df, q):
    assert S.t_quantile(0.975, df) == pytest.approx(q, abs=2e-6)
    assert S.t_quantile(0.025, df) == pytest.approx(-q, abs=2e-6)
    assert S.t_cdf(S.t_quantile(0.9, df), df) == pytest.approx(0.9, abs=1e-9)


def test_t_quantile_tends_to_the_normal_and_rejects_bad_input():
    assert S.t_quantile(0.975, 1e6) == pytest.approx(1.959964, abs=1e-4)
    assert S.t_cdf(0.0, 3) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="p must be"):
        S.t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="df must be"):
        S.t_quantile(0.9, 0)


def test_mean_ci_of_known_samples():
    ci = S.mean_ci([1, 2, 3, 4, 5])
    assert ci["n"] == 5 and ci["mean"] == 3.0
    assert ci["sd"] == pytest.approx(math.sqrt(2.5))
    assert ci["half"] == pytest.approx(2.776445 * math.sqrt(2.5) / math.sqrt(5), abs=1e-6)
    assert (ci["lo"], ci["hi"]) == pytest.approx((3 - ci["half"], 3 + ci["half"]))
    # two values: t(0.975, 1) * |a - b| / 2
    two = S.mean_ci([0.4, 0.6])
    assert two["half"] == pytest.approx(12.706205 * 0.1, abs=1e-6)
    assert S.mean_ci([0.5, 0.5, 0.5])["half"] == 0.0
    one = S.mean_ci([0.7])
    assert one["mean"] == 0.7 and math.isinf(one["half"]) and S.fmt_ci(one) == "0.700"
    assert S.mean_ci([float("nan")])["n"] == 0 and S.fmt_ci(S.mean_ci([])) == "–"
    assert S.mean_ci([1, 2, 3], conf=0.9)["half"] == pytest.approx(2.919986 * 1 / math.sqrt(3), abs=1e-6)


def test_paired_difference_pairs_by_seed():
    variant = {0: 0.60, 1: 0.70, 2: 0.55, 4: 0.9}
    baseline = {0: 0.50, 1: 0.62, 2: 0.49, 3: 0.1}
    p = S.paired_difference(variant, baseline)
    assert p["seeds"] == [0, 1, 2]  # seeds 3 and 4 have no partner
    assert p["diffs"] == pytest.approx([0.10, 0.08, 0.06])
    assert p["mean"] == pytest.approx(0.08)
    assert p["sd"] == pytest.approx(0.02)
    assert p["half"] == pytest.approx(4.302653 * 0.02 / math.sqrt(3), abs=1e-6)
    # unpaired, the same numbers overlap; paired, the difference is clearly positive
    assert p["lo"] > 0 and S.mean_ci([0.6, 0.7, 0.55])["lo"] < S.mean_ci([0.5, 0.62, 0.49])["hi"]


def test_wilson_interval():
    w = S.wilson(8, 10)
    assert w["rate"] == 0.8 and (w["lo"], w["hi"]) == pytest.approx((0.490162, 0.943318), abs=1e-6)
    zero = S.wilson(0, 50)
    assert zero["lo"] == 0.0 and zero["hi"] == pytest.approx(0.071348, abs=1e-6)
    assert math.isnan(S.wilson(0, 0)["rate"])


def _args(*extra):
    return C.build_parser().parse_args(["--seeds", "0", "1", "--ablation-seeds", "0", "--rgr-seeds", "0", "5",
                                        "--steps", "10", "--rgr-steps", "4", *extra])


def _finish(run_dir, steps, wall_s=None):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps({"step": s, "data": {}}) for s in range(steps + 1)))
    if wall_s is not None:
        (run_dir / "wall.json").write_text(json.dumps({"wall_s": wall_s, "steps": steps}))


def test_plan_covers_rgr_seeds_without_a_care_run(tmp_path):
    jobs = C.plan_jobs(tmp_path, _args())
    names = [(n, s) for _, n, _, s, _ in jobs]
    assert names == [("grpo", 0), ("care", 0), ("care_no_rgr", 0), ("care_uniform", 0), ("care_random_selector", 0),
                     ("rgr_promptless", 0), ("rgr_random", 0), ("grpo", 1), ("care", 1), ("care_no_rgr", 1),
                     ("rgr_promptless", 5), ("rgr_random", 5), ("rgr_repair", 5)]
    assert {steps for _, n, _, _, steps in jobs if n.startswith("rgr_")} == {4}
    assert len({d for d, *_ in jobs}) == len(jobs)


def test_a_sweep_without_main_seeds_plans_only_the_ablations_and_the_rgr_modes(tmp_path, capsys):
    """``--seeds`` with no value: the ablations and the RGR modes alone (repair as its own runs, there
    being no CARE run to cut), whatever the baseline; run seed by seed."""
    args = C.build_parser().parse_args(["--seeds", "--ablation-seeds", "1", "--rgr-seeds", "0", "1",
                                        "--rgr-steps", "4"])
    names = [(n, s) for _, n, _, s, _ in C.plan_jobs(tmp_path, args)]
    assert names == [("rgr_promptless", 0), ("rgr_random", 0), ("rgr_repair", 0), ("care_uniform", 1),
                     ("care_random_selector", 1), ("rgr_promptless", 1), ("rgr_random", 1), ("rgr_repair", 1)]
    assert C.main(["--run-dir", str(tmp_path), "--plan-only", "--step-s", "2", "--seeds", "--ablation-seeds",
                   "--rgr-seeds", "2"]) == 0
    assert "3 runs, 0 finished, 3 to run" in capsys.readouterr().out


def test_resume_skips_finished_runs_and_restarts_partial_ones(tmp_path):
    jobs = C.plan_jobs(tmp_path, _args())
    assert C.pending_jobs(jobs) == jobs
    _finish(jobs[0][0], 10)
    _finish(jobs[1][0], 7)  # interrupted at step 7 of 10
    _finish(jobs[5][0], 4)  # an RGR-mode run is finished at its own budget
    left = C.pending_jobs(jobs)
    assert [j[1] for j in left[:3]] == ["care", "care_no_rgr", "care_uniform"]
    assert len(left) == len(jobs) - 2


def test_estimate_uses_measured_step_times(tmp_path):
    jobs = C.plan_jobs(tmp_path, _args())
    assert C.measured_step_s(tmp_path) == (None, 0)
    _finish(jobs[0][0], 10, wall_s=C.STARTUP_S + 10 * 4.0)
    _finish(jobs[1][0], 10, wall_s=C.STARTUP_S + 10 * 6.0)
    step_s, n = C.measured_step_s(tmp_path)
    assert n == 2 and step_s == pytest.approx(5.0)
    left = C.pending_jobs(jobs)
    steps = sum(j[4] for j in left)
    assert C.estimate_wall_s(left, step_s) == pytest.approx(len(left) * C.STARTUP_S + steps * 5.0)
    assert steps == 10 * 6 + 4 * 5  # seed 0: care_no_rgr + 2 ablations, seed 1: 3 variants; 5 RGR-mode runs


def test_plan_only_prints_the_estimate_and_runs_nothing(tmp_path, capsys):
    assert C.main(["--run-dir", str(tmp_path), "--plan-only", "--step-s", "2", "--seeds", "0", "--ablation-seeds",
                   "--rgr-seeds", "--steps", "100"]) == 0
    out = capsys.readouterr().out
    # 3 runs x (90 s start-up + 100 steps x 2 s) = 870 s
    assert "3 runs, 0 finished, 3 to run" in out and "estimated wall time 14 min" in out
    assert not (tmp_path / "meta.json").exists()


def test_every_variant_composes_with_the_demo_recipe():
    from care_verl.adapter.step.care_settings import care_settings_from_config
    from care_verl.adapter.entry.main import build_config

    for name, ov in {**C.VARIANTS, **C.ABLATIONS, **C.RGR_MODES}.items():
        c = build_config(["+recipe=demo_cpu", *ov, *C.seed_overrides(3)])
        care = care_settings_from_config(c)
        assert care.advantage.seed == 3
        if name == "care_uniform":
            assert care.region.mode == "uniform"
        if name == "care_random_selector":
            assert care.advantage.selector == "random"


def _model(path, weights=b"w0"):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(weights)
    return path


def test_the_start_model_is_copied_once_and_a_different_one_is_refused(tmp_path):
    root = tmp_path / "sweep"
    root.mkdir()
    src = _model(tmp_path / "demo_sft")
    pinned, sha = C.pin_start_model(root, src, {})
    assert Path(pinned) == root / "start_model" and sha == C.model_fingerprint(src)
    assert (Path(pinned) / "model.safetensors").read_bytes() == b"w0"
    # `make demo` rebuilds its SFT model: the sweep keeps starting from its copy
    (src / "model.safetensors").write_bytes(b"w1")
    with pytest.raises(C.StartModelMismatch, match="not the model this sweep started from"):
        C.pin_start_model(root, src, {"sft_model_sha256": sha})
    assert (root / "start_model" / "model.safetensors").read_bytes() == b"w0"
    assert C.pin_start_model(root, root / "start_model", {"sft_model_sha256": sha}) == (pinned, sha)
    # the fingerprint covers file names as well as bytes
    other = _model(tmp_path / "renamed", b"w0")
    (other / "model.safetensors").rename(other / "weights.safetensors")
    assert C.model_fingerprint(other) != sha


def test_main_refuses_a_changed_start_model_before_running_anything(tmp_path, capsys):
    root = tmp_path / "sweep"
    root.mkdir()
    src = _model(tmp_path / "demo_sft")
    _, sha = C.pin_start_model(root, src, {})
    (root / "meta.json").write_text(json.dumps({"sft_model": str(root / "start_model"), "sft_model_sha256": sha}))
    (src / "model.safetensors").write_bytes(b"retrained")
    rc = C.main(["--run-dir", str(root), "--sft-model", str(src), "--seeds", "0", "--ablation-seeds", "--rgr-seeds",
                 "--steps", "2", "--variants", "grpo"])
    assert rc == 2
    assert "not the model this sweep started from" in capsys.readouterr().out
    assert not (root / "grpo").exists()


def test_code_versions_count_finished_runs_per_commit(tmp_path):
    for i, code in enumerate(["abc1234", "abc1234", "def5678+dirty"]):
        d = tmp_path / f"r{i}"
        d.mkdir()
        (d / "wall.json").write_text(json.dumps({"wall_s": 1, "steps": 1, "code": code}))
    assert C.code_versions(tmp_path) == "abc1234 (2 runs), def5678+dirty (1 run)"


def test_code_version_names_the_commit_and_uncommitted_changes(tmp_path):
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "f.txt").write_text("a")
    subprocess.run([*git, "add", "f.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert C.code_version(repo) == head
    (repo / "f.txt").write_text("b")
    assert C.code_version(repo) == head + "+dirty"
    assert C.code_version(tmp_path / "not_a_repo") == "unknown"


def test_a_custom_variant_runs_over_the_seeds_and_can_be_the_baseline(tmp_path):
    args = _args("--variants", "care", "--variant", "care_cosine", "actor_rollout_ref.actor.optim.lr_scheduler_type=cosine",
                 "actor_rollout_ref.actor.optim.min_lr_ratio=0.1", "--baseline", "care", "--ablation-seeds", "--rgr-seeds")
    jobs = C.plan_jobs(tmp_path, args)
    assert [(n, s) for _, n, _, s, _ in jobs] == [("care", 0), ("care_cosine", 0), ("care", 1), ("care_cosine", 1)]
    cosine = next(ov for _, n, ov, s, _ in jobs if n == "care_cosine" and s == 1)
    assert cosine[:2] == ["actor_rollout_ref.actor.optim.lr_scheduler_type=cosine",
                          "actor_rollout_ref.actor.optim.min_lr_ratio=0.1"]
    assert "care.seed=1" in cosine and jobs[1][0] == tmp_path / "care_cosine" / "seed0"
    # the overrides compose with the demo recipe into the schedule verl's optimizer reads
    from care_verl.adapter.entry.main import build_config

    c = build_config(["+recipe=demo_cpu", *cosine])
    assert c.actor_rollout_ref.actor.optim.lr_scheduler_type == "cosine"
    assert c.actor_rollout_ref.actor.optim.min_lr_ratio == 0.1


@pytest.mark.parametrize("bad, flag", [
    (["--variant", "grpo", "a=1"], "--variant grpo"),                      # a built-in name
    (["--variant", "x-y", "a=1"], "--variant x-y"),                        # not a Hydra-safe name
    (["--variant", "x", "a=1", "--variant", "x", "b=2"], "--variant x"),   # twice
    (["--variant", "x"], "--variant x"),                                   # no override
    (["--variant", "x", "lr"], "--variant x"),                             # not key=value
    (["--baseline", "care_cosine"], "--baseline care_cosine"),             # not run over --seeds
])
def test_bad_variant_flags_fail_before_anything_runs(tmp_path, capsys, bad, flag):
    rc = C.main(["--run-dir", str(tmp_path), "--seeds", "0", "--ablation-seeds", "--rgr-seeds", "--steps", "2", *bad])
    assert rc == 2
    assert flag in capsys.readouterr().out
    assert not (tmp_path / "meta.json").exists() and not (tmp_path / "grpo").exists()


def test_the_held_out_split_follows_val_seed_and_a_sweep_keeps_its_own(tmp_path, capsys):
    test_split = C.job_overrides(_args(), ["x=1"], ["y=2"])
    val_split = C.job_overrides(_args("--val-seed", "1"), ["x=1"], ["y=2"])
    assert any("split=test&seed=0" in o for o in test_split) and any("split=test&seed=1" in o for o in val_split)
    assert [o for o in test_split if "train_files" in o] == [o for o in val_split if "train_files" in o]
    assert test_split[-2:] == ["x=1", "y=2"]
    (tmp_path / "meta.json").write_text(json.dumps({"val_seed": 1, "custom_variants": {"c": ["a=1"]}}))
    base = ["--run-dir", str(tmp_path), "--seeds", "0", "--ablation-seeds", "--rgr-seeds", "--steps", "2"]
    assert C.main([*base, "--val-seed", "0"]) == 2
    assert "--val-seed 0: this sweep evaluates on --val-seed 1" in capsys.readouterr().out
    assert C.main([*base, "--val-seed", "1", "--variant", "c", "a=2"]) == 2
    assert "--variant c: its overrides differ" in capsys.readouterr().out
    assert C.main([*base, "--val-seed", "1", "--variant", "c", "a=1", "--plan-only"]) == 0
    assert not (tmp_path / "grpo").exists()


def test_a_sweep_refuses_a_changed_recipe_and_records_it_per_run(tmp_path, capsys, monkeypatch):
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "r.yaml").write_text("lr: 3e-4\n")
    monkeypatch.setattr(C, "RECIPES_DIR", recipes)
    root = tmp_path / "sweep"
    root.mkdir()
    sha = C.recipe_fingerprint("r", [])
    assert sha == C.recipe_fingerprint("r", [], recipes) != C.recipe_fingerprint("r", ["x=1"])
    (root / "meta.json").write_text(json.dumps({"recipe": "r", "recipe_sha256": sha, "extra": []}))
    base = ["--run-dir", str(root), "--recipe", "r", "--seeds", "0", "--ablation-seeds", "--rgr-seeds", "--steps", "2"]
    assert C.main([*base, "--plan-only"]) == 0
    # the same overrides after -- are the same recipe; other ones are not
    assert C.main([*base, "--plan-only", "--", "x=1"]) == 2
    assert "changed since this sweep started" in capsys.readouterr().out
    # the file edited between launches (as the demo recipe's lr schedule was): refused before anything runs
    (recipes / "r.yaml").write_text("lr: 3e-4\nlr_scheduler_type: cosine\n")
    assert C.main(base) == 2
    out = capsys.readouterr().out
    assert f"sha256 {sha[:12]} -> {C.recipe_fingerprint('r', [])[:12]}" in out and "use a new --run-dir" in out
    assert not (root / "grpo").exists()
    # the report lists the recipe each finished run recorded
    for i, rsha in enumerate([sha, sha, None]):
        d = root / f"r{i}"
        d.mkdir()
        (d / "wall.json").write_text(json.dumps({"wall_s": 1, "steps": 1, **({"recipe_sha256": rsha} if rsha else {})}))
    assert C.recipe_versions(root) == f"{sha[:12]} (2 runs), unrecorded (1 run)"


def test_a_launch_records_its_recipe_in_the_sweep_and_in_every_run(tmp_path, monkeypatch):
    """Bookkeeping only: the RL stage is replaced by a stand-in that writes a finished run's metrics
    (real training is exercised by tests/demo/test_demo_e2e.py)."""
    def fake_rl(run_dir, model_dir, s, **kw):
        run_dir.mkdir(parents=True, exist_ok=True)
        rows = [{"step": i, "data": {"val-core/synthetic_bars/acc/mean@1": 0.3 + 0.1 * i} if i % 2 == 0 else
                 {"critic/score/mean": 0.3, "timing_s/step": 1.0}} for i in range(s.steps + 1)]
        (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
        return rows

    monkeypatch.setattr(C, "run_rl_stage", fake_rl)
    root = tmp_path / "sweep"
    src = _model(tmp_path / "sft")
    assert C.main(["--run-dir", str(root), "--sft-model", str(src), "--seeds", "0", "1", "--ablation-seeds",
                   "--rgr-seeds", "--steps", "2", "--variants", "grpo", "care", "--quiet", "--", "x=1"]) == 0
    sha = C.recipe_fingerprint("demo_cpu", ["x=1"])
    meta = json.loads((root / "meta.json").read_text())
    assert (meta["recipe"], meta["recipe_sha256"], meta["extra"]) == ("demo_cpu", sha, ["x=1"])
    walls = sorted(root.rglob("wall.json"))
    assert len(walls) == 4 and {json.loads(w.read_text())["recipe_sha256"] for w in walls} == {sha}
    assert f"{sha[:12]} (4 runs)" in (root / "compare.md").read_text()
