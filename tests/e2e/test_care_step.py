"""CARE through `python -m care_verl.main +recipe=tiny_cpu_care` on the tiny VL model (shared runs).

The reward fixture makes even-index prompts solvable (mixed groups: anchors, hard negatives,
RGR) and odd-index prompts unsolvable (all-failed groups: full-negative rescue).
"""

import json
import math

import pytest

from care_verl.core import Role

pytestmark = pytest.mark.e2e

BATCH_ROWS = 16  # train_batch_size 4 x rollout.n 4


@pytest.fixture(scope="module")
def care(care_rgr_run, metrics_of):
    proc, run_dir = care_rgr_run
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-5000:])
    events = [json.loads(line) for line in (run_dir / "care_events.jsonl").read_text().splitlines()]
    return metrics_of(run_dir), events


def test_care_metrics_reach_the_tracker(care):
    metrics, _ = care
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        d = m["data"]
        for key in ("care/frac_groups_with_positive", "care/frac_groups_all_failed", "care/mean_k_prime",
                    "care/zeta", "care/var_ratio", "care/neg_abs_mass_share", "rgr/generated",
                    "rgr/success_rate", "timing_s/care_rgr_generate", "timing_s/care_advantage"):
            assert key in d and math.isfinite(d[key]), key
        assert d["training/rollout_actor_probs_pearson_corr"] > 0.99
        assert d["actor/grad_norm"] > 0


def test_rgr_generated_and_kept_the_batch_size(care):
    metrics, events = care
    for m in metrics:
        d = m["data"]
        assert d["rgr/eligible_groups"] >= 1
        assert d["rgr/generated"] == d["rgr/eligible_groups"] - d["rgr/skipped_too_long"]
        assert d["rgr/generated"] >= 1
        roles = sum(d[f"care/n_{r}"] for r in ("outside", "anchor", "hard_negative", "pseudo_anchor", "pseudo_negative"))
        assert roles == BATCH_ROWS  # rows replaced in place, none appended
    for step in (1, 2):
        rows = [r for e in events if e["step"] == step for r in e["rows"]]
        assert sorted(rows) == list(range(BATCH_ROWS))
        reflected = [f for e in events if e["step"] == step for f in e["reflected"]]
        assert sum(reflected) >= 1


def test_rgr_logprob_recompute_sends_only_the_replaced_rows(care):
    """With log-prob micro-batches of 4, the replaced rows are topped up to 4 distinct rows
    (TransferQueue rejects a repeated key), not the whole 16-row batch."""
    metrics, _ = care
    for m in metrics:
        d = m["data"]
        assert d["rgr/logprob_rows"] % 4 == 0
        assert max(4, d["rgr/generated"]) <= d["rgr/logprob_rows"] < BATCH_ROWS


def test_replaced_rows_carry_masked_cue_tokens(care):
    metrics, _ = care
    for m in metrics:
        d = m["data"]
        assert d["rgr/cue_tokens"] > 0
        assert d["rgr/masked_tokens"] == d["rgr/cue_tokens"]  # exactly the cue is out of the loss


def test_advantages_finite_and_zero_outside_subgroups(care):
    _, events = care
    for e in events:
        for role, adv in zip(e["roles"], e["advantage"]):
            assert math.isfinite(adv)
            if role == Role.OUTSIDE:
                assert adv == 0.0


def test_anchors_positive_negatives_negative(care):
    _, events = care
    anchored = [e for e in events if Role.ANCHOR in e["roles"]]
    assert anchored
    for e in anchored:
        members = [i for i, r in enumerate(e["roles"]) if r != Role.OUTSIDE]
        contrast = not all(e["correct"][i] for i in members)  # RGR may have repaired the only failure
        for role, adv, ok in zip(e["roles"], e["advantage"], e["correct"]):
            if role == Role.ANCHOR:
                assert adv > 0 if contrast else adv == 0
            if role == Role.HARD_NEGATIVE and not ok:
                assert adv < 0


def test_rescue_gives_all_failed_groups_a_zero_sum_signal(care):
    _, events = care
    rescued = [e for e in events if Role.PSEUDO_ANCHOR in e["roles"]]
    assert rescued, "the odd-index prompts are never solved, so their groups must be rescued"
    for e in rescued:
        assert not any(e["correct"])
        assert any(a != 0 for a in e["advantage"])
        assert abs(sum(e["advantage"])) < 1e-6  # raw rescue: +gamma and -gamma/K'
        anchor = e["advantage"][e["roles"].index(Role.PSEUDO_ANCHOR)]
        assert anchor == pytest.approx(0.1)  # care.rescue_gamma


def _forwards(run_dir):
    lines = (run_dir / "forwards.log").read_text().split("\n")
    return sum(1 for line in lines if line.endswith("infer")), sum(1 for line in lines if line.endswith("train"))


def test_embeddings_cost_no_extra_forward(care_no_rgr_run, tiny_cpu_run):
    """CARE (RGR off) runs exactly as many actor forwards per step as GRPO: the embeddings come
    from the old-log-prob forward."""
    proc, care_dir = care_no_rgr_run
    assert proc.returncode == 0, proc.stderr[-5000:]
    grpo_proc, grpo_dir = tiny_cpu_run
    assert grpo_proc.returncode == 0
    assert _forwards(care_dir) == _forwards(grpo_dir)
    assert _forwards(care_dir)[0] > 0
