"""Aggregation, signature and plotting functions on synthetic metrics (no training)."""

from __future__ import annotations

import json
import math

import pytest

from care_verl.demo import analysis as A
from care_verl.demo import compare as C

VAL = "val-core/synthetic_bars/acc/mean@1"


def fake_metrics(val: dict[int, float], steps: int = 20, rgr: bool = False, acc0: float = 0.3) -> list[dict]:
    rows = []
    for s in range(0, steps + 1):
        d = {}
        if s in val:
            d[VAL] = val[s]
        if s > 0:
            d["critic/score/mean"] = acc0 + 0.01 * s
            d["care/accuracy"] = acc0 + 0.01 * s
            d["timing_s/step"] = 3.0
            if rgr:
                d["rgr/generated"] = 4.0
                d["rgr/repaired"] = 1.0 if s % 2 else 0.0
        rows.append({"step": s, "data": d})
    return rows


def event(step, rewards, roles, correct, k_prime, reflected=None, k=4, s=0.5):
    members = [r in (A.ANCHOR, A.HARD_NEGATIVE) for r in roles]
    z = A.subgroup_raw_z(rewards, members)
    eq = math.sqrt(k / k_prime)
    adv = [z[i] * eq if roles[i] == A.ANCHOR else (-s * abs(z[i]) * eq if members[i] else 0.0)
           for i in range(len(roles))]
    return {"step": step, "rows": list(range(len(roles))), "roles": roles, "k_prime": k_prime, "correct": correct,
            "reward": rewards, "advantage": adv, "reflected": reflected or [False] * len(roles)}


def binary_group(step, k_prime, n=8):
    """One correct anchor and k_prime failed negatives with equal rewards (the paper's ideal case)."""
    roles = [A.ANCHOR] + [A.HARD_NEGATIVE] * k_prime + [0] * (n - 1 - k_prime)
    correct = [True] + [False] * (n - 1)
    rewards = [1.0] + [0.0] * (n - 1)
    return event(step, rewards, roles, correct, k_prime)


def test_read_metrics_keeps_the_last_line_of_a_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"step": 1, "data": {"a": 1}}, {"step": 2, "data": {"a": 2}}, {"step": 1, "data": {"a": 3}}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    got = A.read_metrics(path)
    assert [m["step"] for m in got] == [1, 2]
    assert got[0]["data"]["a"] == 3


def test_val_accuracy_and_run_summary():
    m = fake_metrics({0: 0.3, 10: 0.4, 20: 0.6})
    assert A.val_accuracy(m) == ([0, 10, 20], [0.3, 0.4, 0.6])
    s = A.run_summary(m)
    assert s["start"] == 0.3 and s["final"] == 0.6 and s["best"] == 0.6
    assert s["gain"] == pytest.approx(0.3)
    assert s["last_k_mean"] == pytest.approx(0.5)
    assert s["auc"] == pytest.approx(0.5)


def test_signature_matches_sqrt_k_for_binary_rewards():
    events = [binary_group(1, k) for k in (1, 2, 3, 4) for _ in range(3)]
    pts = A.signature_points(events)
    stats = A.signature_stats(pts)
    for k in (1, 2, 3, 4):
        assert stats["per_k"][k]["anchor_mean_z"] == pytest.approx(math.sqrt(k), rel=1e-4)
        assert stats["per_k"][k]["negative_mean_z"] == pytest.approx(-1 / math.sqrt(k), rel=1e-4)
    assert stats["r_anchor_z_vs_sqrtk"] == pytest.approx(1.0, abs=1e-6)
    assert stats["r_negative_z_vs_inv_sqrtk"] == pytest.approx(1.0, abs=1e-6)
    assert stats["anchor_zeta_mean"] == pytest.approx(1.0, rel=1e-4)
    # final advantages: anchor sqrt(K/K')*sqrt(K') = sqrt(K) = 2
    assert all(p.advantage == pytest.approx(2.0, rel=1e-4) for p in pts if p.role == A.ANCHOR)


def test_signature_skips_rescue_groups_and_repaired_negatives():
    rescue = {"step": 1, "rows": [0, 1, 2], "roles": [A.PSEUDO_ANCHOR, A.PSEUDO_NEGATIVE, 0], "k_prime": 1,
              "correct": [False] * 3, "reward": [0.1, 0.0, 0.0], "advantage": [0.1, -0.1, 0], "reflected": [False] * 3}
    repaired = event(1, [1.0, 1.0, 0.0], [A.ANCHOR, A.HARD_NEGATIVE, A.HARD_NEGATIVE], [True, True, False], 2,
                     reflected=[False, True, False])
    pts = A.signature_points([rescue, repaired])
    assert {p.role for p in pts} == {A.ANCHOR, A.HARD_NEGATIVE}
    stats = A.signature_stats(pts)
    assert stats["n_anchor"] == 1 and stats["n_negative"] == 1  # the repaired (now correct) row is left out


def test_subgroup_raw_z_matches_core():
    torch = pytest.importorskip("torch")
    from care_verl.core.advantages import subgroup_zscore

    rewards = [1.1, 0.1, 0.0, 0.1, 1.0]
    members = [True, True, True, False, True]
    ours = A.subgroup_raw_z(rewards, members)
    core = subgroup_zscore(torch.tensor([rewards]), torch.tensor([members]), 1e-6)[0].tolist()
    assert ours == pytest.approx(core, abs=1e-5)


def test_rgr_success_pools_over_steps():
    m = fake_metrics({0: 0.3}, steps=10, rgr=True)
    r = A.rgr_success(m)
    assert r["generated"] == 40 and r["repaired"] == 5
    assert r["success_rate"] == pytest.approx(0.125)
    assert math.isnan(A.rgr_success(fake_metrics({0: 0.3}))["success_rate"])


def test_pre_rgr_accuracy_counts_repaired_rows_as_failures():
    e = {"step": 3, "correct": [True, True, False, False], "reflected": [False, True, False, False]}
    assert A.pre_rgr_accuracy([e]) == ([3], [0.25])


def test_rollout_accuracy_from_dumps(tmp_path):
    d = tmp_path / "rollouts"
    d.mkdir()
    (d / "1.jsonl").write_text("\n".join(json.dumps({"score": s}) for s in (1.1, 0.1, 1.0, 0.0)))
    (d / "2.jsonl").write_text("\n".join(json.dumps({"score": s}) for s in (1.1, 1.1, 1.0, 0.1)))
    assert A.rollout_accuracy(d) == ([1, 2], [0.5, 0.75])


def test_aggregate_curves_and_summaries():
    curves = [([0, 10, 20], [0.3, 0.4, 0.5]), ([0, 10, 20], [0.3, 0.5, 0.7]), ([0, 10], [0.3, 0.6])]
    agg = A.aggregate_curves(curves)
    assert agg["steps"] == [0, 10]
    assert agg["mean"] == pytest.approx([0.3, 0.5])
    assert agg["min"] == pytest.approx([0.3, 0.4]) and agg["max"] == pytest.approx([0.3, 0.6])
    s = A.summarize([0.2, 0.4, float("nan")])
    assert s["n"] == 2 and s["mean"] == pytest.approx(0.3) and s["std"] == pytest.approx(0.1)
    assert A.windowed([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], 2) == ([2, 4], [1.5, 3.5])


def _runs():
    runs = {}
    for name, finals in (("grpo", (0.5, 0.6, 0.7)), ("care", (0.6, 0.7, 0.8))):
        runs[name] = []
        for seed, f in enumerate(finals):
            m = fake_metrics({0: 0.3, 10: (0.3 + f) / 2, 20: f}, rgr=name == "care")
            events = [binary_group(s, k) for s in range(1, 4) for k in (2, 4)] if name == "care" else []
            runs[name].append({"seed": seed, "metrics": m, "events": events,
                               "rollout_acc": ([1, 2, 3, 4], [0.2, 0.3, 0.4, 0.5])})
    return runs


def test_collect_and_tables():
    stats = C.collect(_runs())
    assert stats["grpo"]["final"]["mean"] == pytest.approx(0.6)
    assert stats["care"]["final"]["mean"] == pytest.approx(0.7)
    # sample sd of (0.6, 0.7, 0.8) is 0.1; 95 % t-interval half-width t(0.975, 2) * 0.1 / sqrt(3)
    assert stats["care"]["final"]["sd"] == pytest.approx(0.1)
    assert stats["care"]["final"]["half"] == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)
    assert stats["care"]["per_seed"]["final"] == pytest.approx({0: 0.6, 1: 0.7, 2: 0.8})
    assert stats["grpo"]["rollout_first_quarter"]["mean"] == pytest.approx(0.2)
    assert "rgr" in stats["care"] and "rgr" not in stats["grpo"]
    assert stats["care"]["rgr"]["pooled"]["rate"] == pytest.approx(30 / 240)
    assert stats["care"]["signature"]["r_anchor_z_vs_sqrtk"] == pytest.approx(1.0)
    table = C.markdown_table(stats)
    assert "| grpo | 3 |" in table and "0.700 [0.452, 0.948]" in table
    # the demo's aim (last-two mean >= start + 0.20 and >= 0.55; start 0.3, last two (0.3 + f) / 2 and f):
    # grpo's means 0.45 / 0.525 / 0.6, care's 0.525 / 0.6 / 0.675
    assert stats["grpo"]["demo_aim_met"] == 1 and stats["care"]["demo_aim_met"] == 2
    assert table.splitlines()[2].endswith("| 1/3 |") and table.splitlines()[3].endswith("| 2/3 |")
    paired = C.paired_to_baseline(stats)
    assert set(paired) == {"care"}
    # every seed is exactly +0.1 better: the paired interval has zero width
    assert paired["care"]["final"]["diffs"] == pytest.approx([0.1, 0.1, 0.1])
    assert paired["care"]["final"]["half"] == pytest.approx(0.0, abs=1e-12)
    assert "| care | 3 | 0.100 [0.100, 0.100]" in C.paired_table(paired)
    rgr = C.rgr_table(stats)
    assert "| care |" in rgr and "grpo" not in rgr
    assert "1.000" in C.signature_table(stats)


def test_seed_overrides_cover_every_seed_key():
    keys = {o.split("=")[0] for o in C.seed_overrides(3)}
    assert {"data.seed", "actor_rollout_ref.rollout.seed", "care.seed", "actor_rollout_ref.actor.data_loader_seed",
            "actor_rollout_ref.actor.fsdp_config.seed"} <= keys
    assert all(o.endswith("=3") for o in C.seed_overrides(3))


def test_seed_overrides_compose_with_the_demo_recipe():
    from care_verl.adapter.entry.main import build_config

    c = build_config(["+recipe=demo_cpu", *C.seed_overrides(7), *C.VARIANTS["grpo"]])
    assert c.data.seed == 7 and c.actor_rollout_ref.rollout.seed == 7 and c.care.seed == 7
    assert c.algorithm.adv_estimator == "grpo"
    assert c.trainer.v1.sampler.custom_sampler.name == "FastPollReplayBuffer"


def _check_png(path):
    from PIL import Image

    assert path.exists() and path.stat().st_size > 5_000
    with Image.open(path) as im:
        im.verify()


def test_plots_are_written(tmp_path):
    from care_verl.demo import plots as P

    runs = _runs()
    m = runs["care"][0]["metrics"]
    P.plot_curves(m, tmp_path / "curves.png", sft_point={"greedy_acc": 0.3}, rollout_acc=([1, 2], [0.2, 0.3]))
    P.plot_signature(A.signature_points(runs["care"][0]["events"]), tmp_path / "sig.png")
    P.plot_rgr(m, tmp_path / "rgr.png")
    stats = C.collect(runs)
    P.plot_compare({k: v["curves"] for k, v in stats.items()}, tmp_path / "cmp.png")
    for name in ("curves.png", "sig.png", "rgr.png", "cmp.png"):
        _check_png(tmp_path / name)


def test_report_from_runs_on_disk(tmp_path):
    for name, seeds in _runs().items():
        for r in seeds:
            d = tmp_path / name / f"seed{r['seed']}"
            d.mkdir(parents=True)
            (d / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in r["metrics"]))
            if r["events"]:
                (d / "care_events.jsonl").write_text("\n".join(json.dumps(e) for e in r["events"]))
    meta = {"task": "bars", "command": "x", "sft_model": "m", "steps": 20, "seeds": [0, 1, 2],
            "ablation_seeds": [0, 1], "rgr_seeds": [0, 1], "rgr_steps": 10, "heldout_n": 500}
    result = C.report(tmp_path, meta)
    assert set(result["variants"]) == {"grpo", "care"}
    assert result["rgr_modes"]["repair"]["seeds"] == [0, 1]
    # repair = the CARE runs cut to the RGR budget: 10 steps x 4 generated, 5 repaired per run
    assert result["rgr_modes"]["repair"]["rgr"]["generated"] == 80
    assert result["paired_to_grpo"]["care"]["final"]["mean"] == pytest.approx(0.1)
    md = (tmp_path / "compare.md").read_text()
    assert "| care | 3 |" in md and "variant − grpo" in md and "| 0.766 |" in md
    assert "## Held-out accuracy" in md and "## Mechanism signature" in md
    for name in ("compare_heldout.png", "compare_rollout.png", "compare_rgr.png"):
        _check_png(tmp_path / name)


def test_report_pairs_the_care_variants_with_care(tmp_path):
    """Besides the pairs with GRPO, CARE without RGR and the ablations are paired with full CARE on
    their shared seeds (what each part adds); the GRPO runs stand in for both here (0.1 below CARE)."""
    runs = _runs()
    layout = {"grpo": runs["grpo"], "care": runs["care"], "care_no_rgr": runs["grpo"], "care_uniform": runs["grpo"][:2]}
    for name, seeds in layout.items():
        for r in seeds:
            d = tmp_path / name / f"seed{r['seed']}"
            d.mkdir(parents=True)
            (d / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in r["metrics"]))
    meta = {"task": "bars", "command": "x", "sft_model": "m", "steps": 20, "seeds": [0, 1, 2],
            "ablation_seeds": [0, 1], "rgr_seeds": [], "rgr_steps": 10, "heldout_n": 500}
    result = C.report(tmp_path, meta)
    to_care = result["paired_to_care"]
    assert set(to_care) == {"care_no_rgr", "care_uniform"}
    assert to_care["care_no_rgr"]["final"]["diffs"] == pytest.approx([-0.1, -0.1, -0.1])
    assert to_care["care_uniform"]["final"]["n"] == 2
    assert set(result["paired_to_grpo"]) == {"care", "care_no_rgr", "care_uniform"}
    md = (tmp_path / "compare.md").read_text()
    assert "## Paired differences to care" in md and "| care_no_rgr | 3 | -0.100 [-0.100, -0.100]" in md


def test_report_of_a_sweep_of_only_ablations_and_rgr_modes(tmp_path):
    """No main runs (``--seeds`` empty): the ablations are tabled on their own, repair comes from its
    own runs, and nothing is paired (there is no baseline run)."""
    runs = _runs()
    layout = {"care_uniform": runs["care"][:2], "rgr_modes/repair": runs["care"][:2],
              "rgr_modes/promptless": runs["care"][:2]}
    for name, seeds in layout.items():
        for r in seeds:
            d = tmp_path / name / f"seed{r['seed']}"
            d.mkdir(parents=True)
            (d / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in r["metrics"][:11]))
    meta = {"task": "bars", "command": "x", "sft_model": "m", "steps": 20, "seeds": [], "ablation_seeds": [0, 1],
            "rgr_seeds": [0, 1], "rgr_steps": 10, "heldout_n": 500}
    for name, seeds in {"care_uniform": runs["care"][:2]}.items():  # the ablation runs are full length
        for r in seeds:
            (tmp_path / name / f"seed{r['seed']}" / "metrics.jsonl").write_text(
                "\n".join(json.dumps(x) for x in r["metrics"]))
    result = C.report(tmp_path, meta)
    assert result["variants"] == {} and list(result["ablations"]) == ["care_uniform"]
    assert result["ablations"]["care_uniform"]["seeds"] == [0, 1]
    assert result["rgr_modes"]["repair"]["rgr"]["generated"] == 80  # 10 steps x 4, two runs
    assert set(result["rgr_modes"]) == {"repair", "promptless"} and result["paired_to_grpo"] == {}
    md = (tmp_path / "compare.md").read_text()
    assert md.startswith("# CARE ablations and RGR modes")
    # no empty held-out / paired / signature tables for runs that were never planned
    assert "## Held-out accuracy" not in md and "Paired differences" not in md and "Mechanism signature" not in md
    assert "| care_uniform | 2 |" in md and "(no ablation run finished yet)" not in md
    _check_png(tmp_path / "compare_ablations.png")
    _check_png(tmp_path / "compare_rgr.png")


def test_report_of_a_selection_sweep_pairs_with_its_baseline(tmp_path):
    """A sweep of custom variants on a validation split: the report covers exactly its variants, pairs
    them with --baseline (not GRPO) and says which split and overrides it used."""
    runs = _runs()
    renamed = {"care_cosine": runs["grpo"], "care": runs["care"]}
    for name, seeds in renamed.items():
        for r in seeds:
            d = tmp_path / name / f"seed{r['seed']}"
            d.mkdir(parents=True)
            (d / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in r["metrics"]))
    meta = {"task": "bars", "command": "x", "sft_model": "m", "steps": 20, "seeds": [0, 1, 2], "ablation_seeds": [],
            "rgr_seeds": [], "rgr_steps": 10, "heldout_n": 500, "val_seed": 1, "variants": ["care", "care_cosine"],
            "baseline": "care", "custom_variants": {"care_cosine": ["actor_rollout_ref.actor.optim.lr_scheduler_type=cosine"]}}
    result = C.report(tmp_path, meta)
    assert list(result["variants"]) == ["care", "care_cosine"]
    # the grpo fixture's runs end 0.1 below CARE's, now under the name care_cosine
    assert result["paired_to_care"]["care_cosine"]["final"]["mean"] == pytest.approx(-0.1)
    md = (tmp_path / "compare.md").read_text()
    assert md.startswith("# care vs care_cosine") and "variant − care |" in md
    assert md.count("## Paired differences to care") == 1
    assert "validation split (`--val-seed 1`)" in md and "`actor_rollout_ref.actor.optim.lr_scheduler_type=cosine`" in md


def test_every_planned_run_has_overrides_hydra_accepts(tmp_path):
    """Each comparison run's overrides parse with Hydra's grammar (a '=' in a run name once broke
    every RGR-mode run), and the plan covers variants x seeds, the ablations and the RGR modes."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = C.build_parser().parse_args([])
    jobs = C.plan_jobs(tmp_path, args)
    parser = OverridesParser.create()
    for _, name, overrides, seed, _ in jobs:
        parsed = parser.parse_overrides(overrides)
        assert any(o.key_or_group == "care.seed" and o.value() == seed for o in parsed)
    names = [(name, seed, steps) for _, name, _, seed, steps in jobs]
    # defaults: 3 variants x 5 seeds, 2 ablations x 3 seeds, 2 extra RGR modes x 3 seeds
    assert len(jobs) == 15 + 6 + 6
    assert names[:7] == [("grpo", 0, 300), ("care", 0, 300), ("care_no_rgr", 0, 300), ("care_uniform", 0, 300),
                         ("care_random_selector", 0, 300), ("rgr_promptless", 0, 50), ("rgr_random", 0, 50)]
    assert sorted(s for n, s, _ in names if n == "grpo") == [0, 1, 2, 3, 4]
    assert sorted(s for n, s, _ in names if n == "care_uniform") == [0, 1, 2]
    ov = dict(o.split("=", 1) for o in next(j[2] for j in jobs if j[1] == "care_uniform"))
    assert ov["care.region.mode"] == "uniform" and ov["care.rgr.mode"] == "repair"
    ov = dict(o.split("=", 1) for o in next(j[2] for j in jobs if j[1] == "care_random_selector"))
    assert ov["care.selector"] == "random"
