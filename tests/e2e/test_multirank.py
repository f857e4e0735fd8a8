"""CARE with two data-parallel actor ranks (FSDP2 over gloo) and two hf rollout replicas, on CPU.

One shared run of ``+recipe=tiny_cpu_care trainer.n_gpus_per_node=2`` (2 steps, RGR on). On the
cpu runtime a "GPU" is a logical Ray resource (``ray_init.num_gpus = n_gpus_per_node``, see
docs/cpu_runtime.md), so this starts two actor/reference workers that split every batch (rows
0-7 / 8-15 after verl's balancing) and two rollout servers that share the prompts. Mocked:
nothing but the GPUs themselves.

``care.k=1`` (of 4 rollouts per prompt) makes CARE *choose*: which failure becomes the hard negative
depends on the embeddings, and which becomes the rescue pseudo-anchor on the old log-probs.

Two replicas sample other tokens than one, so a 1-rank verl run would not see the same rollouts.
The 1-rank reference is computed here instead, in one process, on the same rows: each row's
embedding and old log-probs with plain transformers from the initial weights (step 1), and CARE's
advantages with ``care_verl.core`` from the row-aligned values the run stored.
"""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from care_verl.adapter.step.care_settings import care_settings_from_dict
from care_verl.adapter.step.trainer import recompute_rows
from care_verl.core import Role, care_advantages, extract_spans, rescue_anchor_score
from run_helpers import MIXED_GROUPS_REWARD, run_main
from row_checks import (
    ids,
    load_policy,
    load_rows,
    load_tokenizer,
    logprob_max_abs_diff,
    response_len,
    think_pools,
)

pytestmark = pytest.mark.e2e

RANKS = 2
BATCH_ROWS = 16  # train_batch_size 4 x rollout.n 4
LOGPROB_MICRO = 4
K = 1
# The run's care settings, for the reference recomputation (everything else is the default).
CARE = care_settings_from_dict({"k": K})
# Old log-probs of the same tokens under the same weights: the FSDP actor (fp32 on CPU,
# runtime/cpu.yaml) vs the unpadded recomputation here. Measured: <= 0.0023 per token for a row's own
# values (<= 0.031 while the actor computed in bf16), >= 0.29 against any other row's of the same length.
SAME_WEIGHTS_LOGPROB_TOL = 0.01
# The same actor (or the reference, identical at step 1) on the same row in another micro-batch:
# measured equal (0.0); 1e-3 leaves room for another padding width, and is far below the
# >= 0.29 of another row's values.
SAME_ENGINE_LOGPROB_TOL = 1e-3


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("multirank_run")
    proc = run_main([
        "+recipe=tiny_cpu_care",
        f"reward.custom_reward_function.path={MIXED_GROUPS_REWARD}",
        f"care.events_jsonl={run_dir}/care_events.jsonl",
        f"trainer.n_gpus_per_node={RANKS}",
        f"care.k={K}",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={LOGPROB_MICRO}",
        f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={LOGPROB_MICRO}",
        # RGR's recompute call, split over the ranks, is one of the things checked here
        "care.rgr.old_log_probs=recompute",
        # verl needs each rank's share of a mini-batch (16 rows / 2) to be a multiple of this
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={BATCH_ROWS // RANKS}",
        # covered by the 1-rank runs; not what this test is about
        "trainer.save_freq=-1",
        "trainer.test_freq=-1",
    ], run_dir)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-5000:])
    return run_dir


@pytest.fixture(scope="module")
def metrics(run, metrics_of):
    return {m["step"]: m["data"] for m in metrics_of(run)}


@pytest.fixture(scope="module")
def rows(run):
    return {(step, stage): load_rows(run, step, stage) for step in (1, 2) for stage in ("pre", "post")}


@pytest.fixture(scope="module")
def reference(rows, tiny_vl_path):
    """Step 1's rows recomputed in one process with the initial model: per row, its embedding
    (pooled over the span CARE pooled) and its old log-probs."""
    pre = rows[(1, "pre")]
    model = load_policy(tiny_vl_path)
    pools = think_pools(load_tokenizer(tiny_vl_path), pre)
    emb, logp = [], []
    for i in range(BATCH_ROWS):
        e, lp = _embedding_and_logprobs(model, pre, i, pools[i])
        emb.append(e)
        logp.append(lp)
    return torch.stack(emb), logp


@torch.no_grad()
def _embedding_and_logprobs(model, rows: dict, i: int, w: torch.Tensor):
    """Row ``i`` through plain transformers: (pooled, normalised last hidden state over weights ``w``
    [response_len] -> FloatTensor[H]; log-prob of each response token at temperature 1 -> FloatTensor[response_len])."""
    prompt, response = ids(rows["prompts"][i]), ids(rows["responses"][i])
    input_ids = torch.tensor([prompt + response])
    mm = {k: v for k, v in (rows["multi_modal_inputs"][i] or {}).items() if k in ("pixel_values", "image_grid_thw")}
    captured = {}
    handle = model.model.language_model.norm.register_forward_hook(lambda _m, _a, out: captured.__setitem__("h", out))
    try:
        out = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **mm)
    finally:
        handle.remove()
    hidden = captured["h"][0, len(prompt):].float()
    emb = F.normalize((hidden * w[:, None]).sum(0) / w.sum(), dim=0)
    logits = out.logits[0, len(prompt) - 1: len(prompt) + len(response) - 1].float()
    logp = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(response)[:, None]).squeeze(1)
    return emb, logp


def _padded(values: list, n: int) -> torch.Tensor:
    return torch.stack([F.pad(torch.as_tensor(v).float()[:n], (0, n - len(torch.as_tensor(v)[:n]))) for v in values])


def _masks(rows: dict) -> list[torch.Tensor]:
    return [torch.as_tensor(rows["response_mask"][i][: response_len(rows, i)]).float() for i in range(BATCH_ROWS)]


def _spans(rows: dict, tokenizer):
    from care_verl.adapter.step.trainer import build_span_tags

    width = max(response_len(rows, i) for i in range(BATCH_ROWS))
    responses = torch.stack([F.pad(torch.tensor(ids(rows["responses"][i])), (0, width - response_len(rows, i)))
                             for i in range(BATCH_ROWS)])
    mask = _padded(_masks(rows), width).bool()
    return extract_spans(responses, mask, build_span_tags(tokenizer, CARE.tags))


def _index(rows: dict) -> torch.Tensor:
    uids = [str(u) for u in rows["uid"]]
    return torch.tensor([sorted(set(uids)).index(u) for u in uids])


def test_two_actor_ranks_trained_care(run, metrics, rows):
    """Two actor processes ran the forwards, CARE's metrics were logged at both steps, and RGR's
    log-prob recompute sent the replaced rows topped up only to split over the ranks."""
    assert sorted(metrics) == [1, 2]
    pids = {line.split()[0] for line in (run / "forwards.log").read_text().splitlines() if line.endswith("infer")}
    assert len(pids) == RANKS, pids
    for step, d in metrics.items():
        assert d["actor/grad_norm"] > 0 and math.isfinite(d["care/mean_k_prime"])
        assert d["training/rollout_actor_probs_pearson_corr"] > 0.999
        # two replicas: every request is routed by verl's load balancer (care_verl.adapter.rollout.routing)
        assert d["perf/rollout_local_route_share"] == 0.0, step
        if d.get("rgr/generated", 0) > 0:
            replaced = rows[(step, "post")]["replaced_rows"]
            assert d["rgr/logprob_rows"] == RANKS * -(-len(replaced) // RANKS), step
            assert "rgr/ref_logprob_rows" not in d, step  # verl's reference stage runs after RGR
    assert sum(d.get("rgr/generated", 0) for d in metrics.values()) >= 1


def test_the_two_replicas_sample_independently(rows):
    """A prompt's 4 rollouts are spread over both rollout replicas; no two are the same sample (a
    random model's 32-token samples never coincide by chance; replicas seeded alike would repeat
    each other's samples, 6 duplicate pairs in 16 rows before the fix)."""
    for step in (1, 2):
        pre = rows[(step, "pre")]
        uid = [str(u) for u in pre["uid"]]
        dup = [(i, j) for i in range(BATCH_ROWS) for j in range(i + 1, BATCH_ROWS)
               if uid[i] == uid[j] and ids(pre["responses"][i]) == ids(pre["responses"][j])]
        assert not dup, (step, dup)


def _same_row(rows: dict, i: int, j: int) -> bool:
    return ids(rows["prompts"][i]) == ids(rows["prompts"][j]) and ids(rows["responses"][i]) == ids(rows["responses"][j])


def test_each_row_gets_its_own_embedding_after_the_gather(rows, reference, tiny_vl_path):
    """Step 1: half the rows were pooled on rank 0, half on rank 1; every row's stored embedding was
    pooled over that row's think span (else its response) and is its own: cosine >= 0.999 with the
    row's recomputation outside verl, and closer to it than any other
    row's stored embedding (another row's scores about 0.91)."""
    pre = rows[(1, "pre")]
    ref_emb, _ = reference
    for i, pool in enumerate(think_pools(load_tokenizer(tiny_vl_path), pre)):
        used_pool = torch.as_tensor(pre["care_pool_mask"][i]).float()[-len(pool):]  # [prompt zeros | response]
        assert torch.equal(used_pool, pool), i
    stored = torch.stack([torch.as_tensor(e).float() for e in pre["reasoning_emb"]])
    cos = ref_emb @ stored.T  # [recomputed row, stored row], both L2-normalised
    for i in range(BATCH_ROWS):
        assert cos[i, i] >= 0.999, (i, round(float(cos[i, i]), 5))
        others = [j for j in range(BATCH_ROWS) if not _same_row(pre, i, j)]
        assert cos[i, i] > cos[i, others].max(), (i, cos[i].tolist())


def test_old_and_ref_log_probs_are_each_rows_own(rows, reference):
    """Gathered old log-probs match the row's recomputation outside verl; at step 1 the reference
    policy is the actor, so the reference log-probs (also split over both ranks) equal them too,
    RGR rows included."""
    _, ref_logp = reference
    pre = rows[(1, "pre")]
    for i, mask in enumerate(_masks(pre)):
        old = torch.as_tensor(pre["old_log_probs"][i]).float()[: len(mask)]
        assert float(((old - ref_logp[i]) * mask).abs().max()) < SAME_WEIGHTS_LOGPROB_TOL, i
    post = rows[(1, "post")]
    for i, mask in enumerate(_masks(post)):
        old = torch.as_tensor(post["old_log_probs"][i]).float()[: len(mask)]
        ref = torch.as_tensor(post["ref_log_prob"][i]).float()[: len(mask)]
        assert len(ref) == len(mask) and float(((old - ref) * mask).abs().max()) < SAME_ENGINE_LOGPROB_TOL, i


def _care_inputs(rows: dict, tokenizer):
    """What CARE's math takes, rebuilt here from the rows the run stored (row i's own values)."""
    masks = _masks(rows)
    width = max(len(m) for m in masks)
    spans = _spans(rows, tokenizer)
    return {
        "index": _index(rows),
        "correct": torch.tensor(rows["correct"], dtype=torch.bool),
        "reward": torch.tensor(rows["reward"], dtype=torch.float32),
        "think_len": spans.think_len,
        "answer_len": spans.answer_len,
        "embeddings": torch.stack([torch.as_tensor(e).float() for e in rows["reasoning_emb"]]),
        "old_logprob_mean": rescue_anchor_score(_padded(rows["old_log_probs"], width), _padded(masks, width),
                                                CARE.advantage.rescue_anchor),
    }


def test_advantages_equal_a_one_process_computation(rows, tiny_vl_path):
    """Both steps, before and after RGR: the roles, K' and advantages the 2-rank run used equal
    CARE's math run here in one process on the rows as stored, each row with its own embedding and
    old log-probs (that these are the row's own is checked against transformers above).

    Tolerance: same inputs, same float32 formula, so 1e-6 (the rewards are 0/1, z-scores O(1)).
    The check can fail: with K=1 of up to 3 failures CARE chose some failures and left others out,
    and giving a left-out failure the embedding of a chosen one changes the roles."""
    tokenizer = load_tokenizer(tiny_vl_path)
    swapped_differs = False
    for step in (1, 2):
        pre, post = rows[(step, "pre")], rows[(step, "post")]
        x = _care_inputs(pre, tokenizer)
        adv, subgroups = care_advantages(config=CARE.advantage, **x)
        assert subgroups.role.tolist() == list(pre["roles"]), step
        assert adv.tolist() == pytest.approx(list(pre["adv"]), abs=1e-6), step
        left_out = ((subgroups.role == Role.OUTSIDE) & ~x["correct"] & (subgroups.k_prime > 0)).nonzero().flatten()
        for row in left_out.tolist():  # give it a chosen negative's embedding (same group): roles must change
            chosen = int(((subgroups.group == subgroups.group[row]) & (subgroups.pick >= 0)).nonzero()[0])
            emb = x["embeddings"].clone()
            emb[[row, chosen]] = emb[[chosen, row]]
            roles = care_advantages(config=CARE.advantage, **dict(x, embeddings=emb))[1].role
            swapped_differs |= roles.tolist() != list(pre["roles"])

        y = _care_inputs(post, tokenizer)
        adv_post, _ = care_advantages(y["index"], y["correct"], y["reward"], y["think_len"], y["answer_len"], None,
                                      None, CARE.advantage, subgroups=subgroups,
                                      reflected=torch.tensor(post["reflected"], dtype=torch.bool))
        assert adv_post.tolist() == pytest.approx(list(post["adv"]), abs=1e-6), step
        assert subgroups.k_prime.tolist() == list(post["k_prime"]), step
    assert swapped_differs  # CARE left failures out, and which ones depended on the embeddings


def test_rgr_rows_replaced_in_place_across_ranks(metrics, rows):
    """At every step: the same 16 keys in the same order after RGR (rows replaced in place, none
    appended); exactly the replaced rows changed; their recomputed old log-probs (sent over both
    ranks, topped up to an even count) belong to their new tokens; a top-up row, recomputed in
    that smaller call, kept its value."""
    for step, d in metrics.items():
        pre, post = rows[(step, "pre")], rows[(step, "post")]
        assert post["keys"] == pre["keys"] and len(post["keys"]) == BATCH_ROWS
        replaced = sorted(post["replaced_rows"])
        changed = [i for i in range(BATCH_ROWS) if ids(pre["responses"][i]) != ids(post["responses"][i])]
        assert changed == replaced and len(replaced) == d.get("rgr/generated", 0), step
        if not replaced:
            continue
        new = {k: [post[k][i] for i in replaced] for k in ("responses", "response_mask", "rollout_log_probs",
                                                           "old_log_probs")}
        assert logprob_max_abs_diff(new) < 1e-4, step  # measured 4.8e-7; see test_care_step.SAME_POLICY_MAX_LOGPROB_DIFF
        sent, _ = recompute_rows(post["replaced_rows"], BATCH_ROWS, RANKS, LOGPROB_MICRO)
        for i in sorted(set(sent) - set(replaced)):
            n = response_len(post, i)
            before = torch.as_tensor(pre["old_log_probs"][i]).float()[:n]
            after = torch.as_tensor(post["old_log_probs"][i]).float()[:n]
            assert float((before - after).abs().max()) < SAME_ENGINE_LOGPROB_TOL, (step, i)


def test_events_agree_with_the_rows(run, rows):
    """The per-group events (care.events_jsonl) report the advantages stored for the rows."""
    events = [json.loads(line) for line in (run / "care_events.jsonl").read_text().splitlines()]
    for step in (1, 2):
        post = rows[(step, "post")]
        step_events = [e for e in events if e["step"] == step]
        assert sorted(r for e in step_events for r in e["rows"]) == list(range(BATCH_ROWS))
        for e in step_events:
            for r, a in zip(e["rows"], e["advantage"]):
                assert a == pytest.approx(post["adv"][r], abs=1e-7)
