"""CARE through `python -m care_verl.main +recipe=tiny_cpu_care` on the tiny VL model (shared runs).

The reward fixture makes even-index prompts solvable (mixed groups: anchors, hard negatives,
RGR) and odd-index prompts unsolvable (all-failed groups: full-negative rescue).
"""

import json
import math

import pytest
import torch

from care_verl.adapter.step.care_settings import DEFAULT_CUE
from care_verl.core import Role
from care_verl.adapter.step.embeddings import EMBED_KEY
from row_checks import (check_step1_embeddings, ids, load_rows, load_tokenizer, logprob_max_abs_diff, response_len,
                        think_pools)

pytestmark = pytest.mark.e2e

BATCH_ROWS = 16  # train_batch_size 4 x rollout.n 4
K, NEG_SCALE, REFL_SCALE, EPS = 4, 0.5, 0.25, 1e-6  # care.k, neg_scale, refl_neg_scale (None: s/2), eps
# Rollout vs actor log-probs of the same tokens under the same weights: both compute in fp32 on CPU
# (runtime/cpu.yaml), so only batching and reduction order differ: measured <= 9.5e-7 (it was <= 0.034
# while the actor computed in bf16); a rollout policy one optimiser step stale differs by > 0.1 on
# some token (docs/testing.md), so a bf16 actor or a stale sync fails this.
SAME_POLICY_MAX_LOGPROB_DIFF = 1e-4
# The same actor (or reference) on the same row in a smaller call with smaller micro-batches: the
# rows are packed without padding, so only the reduction order can differ; far below the
# >= 0.29 of another row's values (tests/e2e/test_multirank.py).
SAME_ENGINE_LOGPROB_TOL = 1e-3


@pytest.fixture(scope="module")
def care(care_rgr_run, metrics_of):
    proc, run_dir = care_rgr_run
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-5000:])
    events = [json.loads(line) for line in (run_dir / "care_events.jsonl").read_text().splitlines()]
    return metrics_of(run_dir), events


@pytest.fixture(scope="module")
def run_dir(care_rgr_run):
    return care_rgr_run[1]


@pytest.fixture(scope="module")
def rows(care, run_dir):
    """{(step, "pre" | "post"): the step's rows before RGR / after the advantages were written}."""
    return {(step, stage): load_rows(run_dir, step, stage) for step in (1, 2) for stage in ("pre", "post")}


@pytest.fixture(scope="module")
def tokenizer(tiny_vl_path):
    return load_tokenizer(tiny_vl_path)


def test_care_metrics_reach_the_tracker(care):
    metrics, _ = care
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        d = m["data"]
        for key in ("care/frac_groups_with_positive", "care/frac_groups_all_failed", "care/mean_k_prime",
                    "care/zeta", "care/var_ratio", "care/neg_abs_mass_share", "rgr/generated",
                    "rgr/success_rate", "timing_s/care_rgr_generate", "timing_s/care_advantage"):
            assert key in d and math.isfinite(d[key]), key
        assert d["training/rollout_actor_probs_pearson_corr"] > 0.999
        assert d["actor/grad_norm"] > 0


def test_embeddings_are_each_rows_own_with_micro_batches_of_4(rows, tiny_vl_path, tokenizer):
    """Step 1, initial weights: the embedding CARE selected hard negatives with is, row by row, the
    pooled last hidden state of that row over its think span (else its response), recomputed with
    plain transformers outside verl (cosine >= 0.999; another row's scores about 0.91)."""
    pre = rows[(1, "pre")]
    check_step1_embeddings(pre, tiny_vl_path)
    # the think-span branch of the pooling ran: the random model wrote think tags in some rows
    assert any(len(p) > p.sum() for p in think_pools(tokenizer, pre))


def test_rollout_policy_is_the_actor_policy(rows):
    """Weight sync: at step 2 (after one update) the rollout sampled with the weights the actor
    recomputes log-probs with: same tokens, log-probs within SAME_POLICY_MAX_LOGPROB_DIFF."""
    for step in (1, 2):
        assert logprob_max_abs_diff(rows[(step, "pre")]) < SAME_POLICY_MAX_LOGPROB_DIFF, step


def _cue_position(response: list[int], cue: list[int]) -> int:
    found = [p for p in range(len(response) - len(cue) + 1) if response[p:p + len(cue)] == cue]
    assert len(found) == 1, found
    return found[0]


def test_rgr_rewrote_exactly_the_generated_rows_in_place(care, rows, tokenizer):
    """Read back after the step: the same 16 keys and fields; exactly ``rgr/generated`` rows changed,
    each is the reused failed reasoning + the cue + a continuation, with response_mask and loss_mask
    0 exactly on the cue's tokens; every other row is untouched."""
    metrics, _ = care
    cue = tokenizer.encode(DEFAULT_CUE, add_special_tokens=False)
    for m in metrics:
        step, d = m["step"], m["data"]
        pre, post = rows[(step, "pre")], rows[(step, "post")]
        assert post["keys"] == pre["keys"] and len(post["keys"]) == BATCH_ROWS  # replaced in place, none appended
        assert set(pre) - {"advantages"} <= set(post)
        changed = [i for i in range(BATCH_ROWS) if ids(pre["responses"][i]) != ids(post["responses"][i])]
        assert changed == sorted(post["replaced_rows"]) and len(changed) == d["rgr/generated"] >= 1
        assert sum(post["reflected"]) == len(changed) and all(post["reflected"][i] for i in changed)
        for i in range(BATCH_ROWS):
            response = ids(post["responses"][i])
            masks = {name: [int(v) for v in post[name][i][: len(response)]] for name in ("response_mask", "loss_mask")}
            if i in changed:
                p = _cue_position(response, cue)
                assert response[:p] == ids(pre["responses"][post["sources"][i]])[:p]  # the failed reasoning, reused
                assert DEFAULT_CUE.strip() in tokenizer.decode(response)
                for name, mask in masks.items():
                    assert [j for j, v in enumerate(mask) if v == 0] == list(range(p, p + len(cue))), (step, i, name)
            else:
                assert DEFAULT_CUE.strip() not in tokenizer.decode(response)
                for name, mask in masks.items():
                    assert mask == [int(v) for v in pre[name][i][: len(response)]], (step, i, name)


def test_rgr_rows_get_the_documented_advantages(rows, tokenizer):
    """After RGR, in each group with a replaced row (recomputed from the rows read back): a repaired
    row that is correct gets the anchor side, z * eq; one that still fails gets -s_refl * |z| * eq;
    other failures -s * |z| * eq (z over the subgroup's rewards, eq = sqrt(K / K')). Correctness of
    a repaired row is the reward fixture's rule on its text (even prompt index and a digit)."""
    seen = set()
    for step in (1, 2):
        post = rows[(step, "post")]
        uid = [str(u) for u in post["uid"]]
        for i in post["replaced_rows"]:
            text = tokenizer.decode(ids(post["responses"][i]), skip_special_tokens=True)
            index = int(post["extra_info"][i]["index"])
            assert post["correct"][i] == (index % 2 == 0 and any(c.isdigit() for c in text)), (step, i)
            group = [j for j in range(BATCH_ROWS) if uid[j] == uid[i]]
            members = [j for j in group if post["roles"][j] != Role.OUTSIDE]
            r = torch.tensor([post["reward"][j] for j in members], dtype=torch.float64)
            z = dict(zip(members, ((r - r.mean()) / (r.std(unbiased=False) + EPS)).tolist()))
            eq = math.sqrt(K / post["k_prime"][i])
            for j in members:
                if post["correct"][j]:
                    expected = z[j] * eq
                else:
                    expected = -(REFL_SCALE if post["reflected"][j] else NEG_SCALE) * abs(z[j]) * eq
                assert post["adv"][j] == pytest.approx(expected, rel=1e-5, abs=1e-6), (step, j)
            seen.add(bool(post["correct"][i]))
    assert seen == {True, False}  # both a repaired and a still-failing reflected row were checked


def test_rgr_log_probs_recomputed_for_the_new_content(care, rows):
    """Old log-probs of a replaced row belong to its new tokens and positions: verl's rollout-vs-actor
    check on the recomputed rows (published as rgr/recompute_*) agrees, and so do the stored values
    on the continuation the rollout sampled (the cue and reused prefix are masked or carried over)."""
    metrics, _ = care
    for m in metrics:
        d = m["data"]
        assert d["rgr/recompute_probs_pearson_corr"] > 0.999
        post = rows[(m["step"], "post")]
        replaced = {k: [v[i] for i in post["replaced_rows"]] for k, v in post.items()
                    if k in ("responses", "response_mask", "rollout_log_probs", "old_log_probs")}
        assert logprob_max_abs_diff(replaced) < SAME_POLICY_MAX_LOGPROB_DIFF


def test_rgr_logprob_recompute_sends_only_the_replaced_rows(care, rows, run_dir):
    """Fixed log-prob micro-batches of 4 (actor) and 16 (reference, the whole batch): RGR runs in
    the old-log-prob stage, so its one recompute call sends only the replaced rows (one rank: nothing
    to top up), with a micro-batch of that size for the call, and verl's reference stage, after it,
    scores every row as stored. The stored old log-probs, reference log-probs and embeddings equal a
    whole-batch recompute after the step's reference stage (the trainer dumps one as step<N>_rgr_full
    under the row dump, then puts the stored values back) — a reference stage that ran before RGR
    would leave the replaced rows with their failed responses' values; the old log-probs and
    embeddings of every other row keep their values bit for bit."""
    metrics, _ = care
    checked = 0
    for m in metrics:
        step, d = m["step"], m["data"]
        pre, post = rows[(step, "pre")], rows[(step, "post")]
        replaced = sorted(post["replaced_rows"])
        if not replaced:
            continue
        assert d["rgr/logprob_rows"] == len(replaced) and "rgr/ref_logprob_rows" not in d, step
        assert "ref_log_prob" not in pre  # RGR ran before verl's reference stage
        full = load_rows(run_dir, step, "rgr_full")
        for i in range(BATCH_ROWS):
            n = response_len(post, i)
            got = torch.as_tensor(post["ref_log_prob"][i]).float()[:n]
            want = torch.as_tensor(full["ref_log_prob"][i]).float()[:n]
            assert float((got - want).abs().max()) <= SAME_ENGINE_LOGPROB_TOL, (step, i, "ref_log_prob")
            got = torch.as_tensor(post["old_log_probs"][i]).float()[:n]
            if i in replaced:
                want = torch.as_tensor(full["old_log_probs"][i]).float()[:n]
                assert float((got - want).abs().max()) <= SAME_ENGINE_LOGPROB_TOL, (step, i, "old_log_probs")
            else:
                assert torch.equal(got, torch.as_tensor(pre["old_log_probs"][i]).float()[:n]), (step, i)
            got, want = (torch.as_tensor(r[EMBED_KEY][i]).float() for r in (post, full))
            if i in replaced:
                assert float(torch.nn.functional.cosine_similarity(got, want, dim=0)) > 1 - 1e-4, (step, i)
            else:
                assert torch.equal(got, torch.as_tensor(pre[EMBED_KEY][i]).float()), (step, i)
        checked += 1
    assert checked, "RGR replaced no row in either step"


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


def test_worker_calls_without_driver_only_fields_compute_the_same(care, run_dir):
    """care.rollout.select_worker_fields (default on) sends the actor and reference workers every
    stored field except the driver-only ones. Under $CARE_VERL_FIELD_PARITY the trainer repeats each
    step's old-log-prob and reference calls with every field: old and reference log-probs, entropy
    and reasoning embeddings are bit-identical, and the selected call really went without the
    driver-only fields that were stored (so the check is not vacuous)."""
    from care_verl.adapter.step.worker_fields import DRIVER_ONLY_FIELDS

    checked = 0
    for step in (1, 2):
        for call, outputs in (("old", ("old_log_probs", "entropy", EMBED_KEY)), ("ref", ("ref_log_prob",))):
            dump = load_rows(run_dir, step, f"all_fields_{call}")
            sent, stored = set(dump["fields_sent"]), set(dump["fields_stored"])
            skipped = stored & set(DRIVER_ONLY_FIELDS)
            assert {"raw_prompt", "extra_fields", "reward_model"} <= skipped, sorted(stored)
            assert sent == stored - skipped, (sorted(sent), sorted(stored))
            assert "multi_modal_inputs" in sent and "input_ids" in sent
            for name in outputs:
                selected, every = dump[f"selected_{name}"], dump[f"all_{name}"]
                assert len(selected) == len(every) == BATCH_ROWS
                for i in range(BATCH_ROWS):
                    assert torch.equal(torch.as_tensor(selected[i]), torch.as_tensor(every[i])), (step, call, name, i)
            checked += 1
    assert checked == 4
