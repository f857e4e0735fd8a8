"""The CARE trainer: verl 0.9.1's v1 synchronous trainer with CARE's steps in place.

Registered as ``trainer.v1.trainer_mode=care_sync`` (selected automatically by
``algorithm.adv_estimator=care``). What it overrides, and why (see docs/care_trainer.md):

- ``_compute_old_log_prob``: before verl's call, writes each row's pooling weights (its think
  span, or the whole response when there is none) next to the batch in TransferQueue and flags
  the batch, so the actor's old-log-prob forward also returns reasoning embeddings
  (:mod:`care_verl.adapter.step.embeddings`). No extra forward pass. Then CARE's subgroups
  (:mod:`care_verl.core`, correctness from the verifier's ``acc``) and RGR
  (:mod:`care_verl.adapter.step.rgr`) with the old log-probs of the replaced rows: RGR needs the
  embeddings and runs before verl's reference stage, so that stage's one call covers the rows
  RGR replaced.
- ``_compute_advantage``: CARE advantages of the (possibly replaced) rows, region-weighted token
  advantages, and CARE metrics. Everything else (rollout, reward, ref, update, weight sync,
  validation, checkpoints) is verl's own code.
"""

from __future__ import annotations

import json
import time
import zlib
from typing import Any

import numpy as np
import torch
import transfer_queue as tq
from tensordict import TensorDict

from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.workers.utils.padding import response_to_nested

from care_verl.adapter.step.care_settings import care_settings_from_config
from care_verl.adapter.step import row_dump
from care_verl.adapter.step.embeddings import EMBED_FLAG, EMBED_KEY, POOL_FIELD, check_embeddings
from care_verl.adapter.step.worker_fields import WorkerFieldsTrainer
from care_verl.reflection import content_key
from care_verl.core import (
    SpanTags,
    care_advantages,
    care_diagnostics,
    extract_spans,
    region_token_advantages,
    rescue_anchor_score,
    tag_tokens,
)

from care_verl.adapter.step.trainer_mode import CARE_TRAINER_MODE as TRAINER_MODE


def build_span_tags(tokenizer, tags) -> SpanTags:
    """Token-id variants of the configured tags for this tokenizer (see core.spans)."""
    from care_verl.core import boxed_tokens

    def encode(text: str):
        return tokenizer.encode(text, add_special_tokens=False)

    boxed = None
    if tags.boxed:
        boxed = boxed_tokens(encode, lambda i: tokenizer.decode([i]), len(tokenizer))
    return SpanTags(
        think=tag_tokens(encode, tags.think_open, tags.think_close),
        answer=tag_tokens(encode, tags.answer_open, tags.answer_close),
        boxed=boxed,
    )


def pad_rows_to_multiple(rows: list[int], batch_size: int, multiple: int) -> list[int]:
    """``rows`` topped up with other distinct rows to a multiple of ``multiple``; every row if that is no smaller."""
    needed = -len(rows) % multiple
    if len(rows) + needed >= batch_size:
        return list(range(batch_size))
    chosen = set(rows)
    return list(rows) + [i for i in range(batch_size) if i not in chosen][:needed]


def recompute_rows(rows: list[int], batch_size: int, ranks: int, micro: int | None) -> tuple[list[int], int | None]:
    """The rows one log-prob call sends for RGR's replaced ``rows``, and the micro-batch size per rank
    to send them with (``None``: the worker's configured one).

    ``micro`` is the worker's configured ``log_prob_micro_batch_size_per_gpu`` (``None`` with dynamic
    batch size: the rows only have to split over the ``ranks``). Each rank gets ``ceil(len(rows) /
    ranks)`` rows in as few micro-batches as ``micro`` allows, each made as small as that count
    permits (never above ``micro``); the rows are topped up with other distinct rows of the batch to
    ``ranks x micro-batches x that size`` (verl asserts a rank's rows are a multiple of its micro-batch,
    verl/workers/engine/utils.py:125). When that is no smaller than the batch, the whole batch goes
    with the configured micro-batch, which divides it.
    """
    if micro is None:
        return pad_rows_to_multiple(rows, batch_size, ranks), None
    per_rank = -(-len(rows) // ranks)
    chunks = -(-per_rank // micro)
    size = -(-per_rank // chunks)
    total = ranks * chunks * size
    if total >= batch_size:
        return list(range(batch_size)), None
    return pad_rows_to_multiple(rows, batch_size, total), size


def padded(nested: torch.Tensor, pad: float = 0) -> torch.Tensor:
    """A jagged nested tensor (or a plain tensor) as a right-padded dense tensor."""
    if getattr(nested, "is_nested", False):
        return torch.nested.to_padded_tensor(nested, pad)
    return nested


def as_list(value) -> list:
    """A TensorDict non-tensor entry (NonTensorStack or the list-like it unwraps to) as a list."""
    return value.tolist() if hasattr(value, "tolist") else list(value)


def row_content_keys(prompts, responses) -> list[int]:
    """Per-row `content_key` of (prompt ids, response ids): what RGR's random draw keys on, so a
    resumed step that receives its rows in another order draws the same failures."""
    rows = lambda t: [r.tolist() for r in (t.unbind() if getattr(t, "is_nested", False) else t)]
    return [content_key(p, r) for p, r in zip(rows(prompts), rows(responses))]


def group_index(uids) -> torch.Tensor:
    """Integer group ids from verl's per-row uid strings."""
    _, inverse = np.unique(np.asarray([str(u) for u in uids], dtype=object), return_inverse=True)
    return torch.as_tensor(inverse, dtype=torch.long)


def reward_infos(extra_fields) -> list[dict]:
    """Each row's ``reward_extra_info`` (what the reward function returned besides the score)."""
    return [(f or {}).get("reward_extra_info", {}) if isinstance(f, dict) else {} for f in extra_fields]


def verifier_fault_counts(infos: list[dict]) -> dict[str, float]:
    """Rows whose verifier timed out / failed (scored 0, see care_verl.verifier.pool), as metrics."""
    return {
        "reward/verifier_timeouts": float(sum(int(i.get("verifier_timeout") or 0) for i in infos)),
        "reward/verifier_errors": float(sum(int(i.get("verifier_error") or 0) for i in infos)),
    }


def verifier_accuracy(infos: list[dict]) -> torch.Tensor:
    """Per-row ``acc`` from the reward function's extra info (CARE's pass/fail gate)."""
    acc = []
    for i, info in enumerate(infos):
        if "acc" not in info:
            raise KeyError(
                f"row {i}: the reward function returned no 'acc'; CARE decides correctness from the "
                "verifier's accuracy (care_verl.reward.compute_score returns it)"
            )
        acc.append(float(info["acc"]))
    return torch.tensor(acc) > 0.5


@register_trainer(TRAINER_MODE)
class CarePPOTrainer(WorkerFieldsTrainer):
    """verl's synchronous v1 trainer with CARE advantages, embeddings and RGR (and worker calls that
    fetch only the fields workers read, :mod:`care_verl.adapter.step.worker_fields`)."""

    PARITY_OLD_FIELDS = (*WorkerFieldsTrainer.PARITY_OLD_FIELDS, EMBED_KEY)

    def __init__(self, config):
        super().__init__(config)
        self.care = care_settings_from_config(config)
        self._span_tags = None
        self._rgr = None
        self._events_path = self.care.events_jsonl
        self._selection: dict | None = None  # the step's subgroups and RGR, from the old-log-prob stage

    # ---- helpers ------------------------------------------------------------------------
    @property
    def span_tags(self) -> SpanTags:
        if self._span_tags is None:
            self._span_tags = build_span_tags(self.tokenizer, self.care.tags)
        return self._span_tags

    @property
    def rgr(self):
        if self._rgr is None:
            from care_verl.adapter.step.rgr import RgrRunner

            self._rgr = RgrRunner(self, self.care.rgr, self.span_tags)
        return self._rgr

    def _response_spans(self, responses: torch.Tensor, response_mask: torch.Tensor):
        return extract_spans(responses, response_mask.bool(), self.span_tags)

    # ---- step overrides -----------------------------------------------------------------
    def _compute_old_log_prob(self, batch, metrics: dict):
        """verl's old-log-prob stage: old log-probs and embeddings of every row, then CARE's subgroups
        and RGR (which needs the embeddings). Running RGR here, before verl's reference stage, lets
        that stage's one call score the replaced rows too; only their old log-probs are recomputed."""
        batch = self._old_log_probs_with_embeddings(batch, metrics)
        self._selection = self._select_and_reflect(batch, metrics)
        return batch

    def _old_log_probs_with_embeddings(self, batch, metrics: dict):
        """verl's old-log-prob call for ``batch``'s rows, with each row's pooling weights (its think
        span, or the whole response) written next to it so the same forward returns its embedding."""
        start = time.perf_counter()
        data = tq.kv_batch_get(
            keys=batch.keys, partition_id=batch.partition_id, select_fields=["prompts", "responses", "response_mask"]
        )
        responses, mask = padded(data["responses"]), padded(data["response_mask"])
        spans = self._response_spans(responses, mask)
        pool = torch.where(spans.think_len[:, None] > 0, spans.think_mask, mask.bool()).float()
        prompt_lens = data["prompts"].offsets().diff()
        resp_lens = data["response_mask"].offsets().diff()
        rows = [
            torch.cat([torch.zeros(int(p)), pool[i, : int(r)]]) for i, (p, r) in enumerate(zip(prompt_lens, resp_lens))
        ]
        tq.kv_batch_put(
            keys=batch.keys,
            partition_id=batch.partition_id,
            fields=TensorDict({POOL_FIELD: torch.nested.as_nested_tensor(rows, layout=torch.jagged)}, batch_size=len(rows)),
        )
        metrics["timing_s/care_spans"] = time.perf_counter() - start
        batch.extra_info[EMBED_FLAG] = True
        try:
            return super()._compute_old_log_prob(batch, metrics)
        finally:
            batch.extra_info.pop(EMBED_FLAG, None)

    def _advantage_inputs(self, batch) -> dict:
        """Everything ``care_advantages`` needs, read from TransferQueue for ``batch``'s rows."""
        fields = ["uid", "prompts", "responses", "response_mask", "rm_scores", "old_log_probs", EMBED_KEY, "extra_fields",
                  "extra_info"]
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        mask = padded(data["response_mask"]).float()
        old_lp = padded(data["old_log_probs"]).float()
        infos = reward_infos(as_list(data["extra_fields"]))
        embeddings = padded(data[EMBED_KEY]).float()
        check_embeddings(embeddings)
        return {
            "response_mask_nested": data["response_mask"],
            "mask": mask,
            "reward": padded(data["rm_scores"]).sum(-1).float(),
            "correct": verifier_accuracy(infos),
            "verifier_faults": verifier_fault_counts(infos),
            "index": group_index(as_list(data["uid"])),
            "row_keys": row_content_keys(data["prompts"], data["responses"]),
            "old_lp_score": rescue_anchor_score(old_lp, mask, self.care.advantage.rescue_anchor),
            "embeddings": embeddings,
            "spans": self._response_spans(padded(data["responses"]), mask),
            "prompt_indices": sorted({int((e or {}).get("index", -1)) for e in as_list(data["extra_info"])}),
        }

    def _recompute_plan(self) -> tuple[int, int | None]:
        """(ranks, configured micro-batch per rank or None with dynamic batch size) of the actor's
        old-log-prob calls."""
        arr = self.config.actor_rollout_ref
        ranks = max(1, getattr(self.actor_rollout_wg, "world_size", 1))
        return ranks, None if arr.actor.use_dynamic_bsz else (arr.rollout.log_prob_micro_batch_size_per_gpu or 1)

    def _log_prob_meta(self, batch, sent: list[int], micro: int | None, ref: bool):
        """A KVBatchMeta of ``batch``'s rows ``sent`` for one old (or reference) log-prob call, with
        micro-batches of ``micro`` rows per rank for that call alone (``None``: the configured size)."""
        from transfer_queue import KVBatchMeta

        extra_info = dict(batch.extra_info)
        extra_info.pop("micro_batch_size_per_gpu", None)
        if not ref:  # a reference call may have left it there (LoRA: ref = actor without its adapter)
            extra_info.pop("no_lora_adapter", None)
        if micro is not None:
            # verl's infer_batch fills micro_batch_size_per_gpu from its config only when the call does
            # not carry one (verl/workers/engine_workers.py:405-416); the KVBatchMeta's extra_info
            # reaches the worker's TensorDict as non-tensor data (verl/utils/transferqueue_utils.py:163-176)
            extra_info["micro_batch_size_per_gpu"] = micro
        return KVBatchMeta(
            partition_id=batch.partition_id,
            keys=[batch.keys[i] for i in sent],
            tags=[batch.tags[i] for i in sent],
            extra_info=extra_info,
        )

    def _recompute_log_probs(self, batch, rows: list[int], metrics: dict) -> int:
        """Old log-probs and embeddings for the replaced rows; returns how many rows the call sent.
        Their reference log-probs come from verl's reference stage, which runs after RGR.

        verl's rollout-vs-actor check on the rows sent goes to ``metrics`` as ``rgr/recompute_*``
        (the RGR continuation was sampled by the rollout with the same weights, so it must agree).

        The call sends the replaced rows, topped up only as far as the ranks and micro-batches
        require (:func:`recompute_rows`), with a micro-batch size for that call alone; the top-up
        rows are other rows of the batch (their log-probs are recomputed under the same weights, so
        they do not change; TransferQueue rejects a batch that names a key twice).
        """
        scratch: dict = {}
        sent, micro = recompute_rows(rows, len(batch), *self._recompute_plan())
        self._old_log_probs_with_embeddings(self._log_prob_meta(batch, sent, micro, ref=False), scratch)
        for name in ("rollout_actor_probs_pearson_corr", "rollout_probs_diff_max"):
            if f"training/{name}" in scratch:
                metrics[f"rgr/recompute_{name.replace('rollout_actor_', '').replace('rollout_', '')}"] = float(
                    scratch[f"training/{name}"]
                )
        return len(sent)

    def _dump_whole_batch_recompute(self, batch) -> None:
        """Tests only ($CARE_VERL_ROW_DUMP): what recomputing the whole batch after RGR and verl's
        reference stage would have stored (old and reference log-probs and embeddings of every row,
        configured micro-batches), dumped as ``step<N>_rgr_full.pt``; the stored values are then put
        back, so the run continues exactly as without the dump (tests/e2e/test_care_step.py compares
        the two)."""
        every = list(range(len(batch)))
        fields = ["old_log_probs", "entropy", EMBED_KEY] + (["ref_log_prob"] if self.use_reference_policy else [])
        kept = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        self._old_log_probs_with_embeddings(self._log_prob_meta(batch, every, None, ref=False), {})
        if self.use_reference_policy:
            self._compute_ref_log_prob(self._log_prob_meta(batch, every, None, ref=True), {})
        full = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        row_dump.dump_rows(self.global_steps, "rgr_full", full, {})
        tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=kept)

    def _select_and_reflect(self, batch, metrics: dict) -> dict:
        """CARE's subgroups for ``batch`` and, when RGR is on, its repairs: replaced rows rewritten in
        TransferQueue with their old log-probs recomputed (with ``care.rgr.old_log_probs=rollout``,
        RGR wrote them from the sampling). Returns what ``_compute_advantage`` finishes from (the
        advantage inputs, read again after a repair)."""
        start = time.perf_counter()
        x = self._advantage_inputs(batch)
        index, correct, reward, spans = x["index"], x["correct"], x["reward"], x["spans"]
        adv, subgroups = care_advantages(
            index, correct, reward, spans.think_len, spans.answer_len, x["embeddings"], x["old_lp_score"],
            self.care.advantage,
        )
        if row_dump.enabled():
            # reasoning_emb: the embeddings care_advantages was given (not only what the actor stored)
            self._dump_rows(batch, "pre", correct=correct, reward=reward, adv=adv, roles=subgroups.role,
                            reasoning_emb=list(x["embeddings"]))
        reflected = torch.zeros_like(correct)
        outcome = None
        if self.care.rgr.mode != "off":
            rgr_start = time.perf_counter()
            outcome = self.rgr.run(batch, subgroups, index, correct, x["row_keys"])
            metrics.update(outcome.metrics)
            if outcome.examples:
                from care_verl.adapter.entry.trackers import log_rgr_examples

                log_rgr_examples(self.config, outcome.examples, self.global_steps)
            if outcome.replaced_rows:
                lp_start = time.perf_counter()
                if self.care.rgr.old_log_probs == "recompute":  # else RGR wrote them from the sampling
                    metrics["rgr/logprob_rows"] = self._recompute_log_probs(batch, outcome.replaced_rows, metrics)
                    metrics["timing_s/care_rgr_logprob"] = time.perf_counter() - lp_start
                x = self._advantage_inputs(batch)
                reflected[outcome.replaced_rows] = True
            metrics["timing_s/care_rgr"] = time.perf_counter() - rgr_start
        return {"inputs": x, "subgroups": subgroups, "adv": adv, "outcome": outcome, "reflected": reflected,
                "seconds": time.perf_counter() - start}

    def _compute_advantage(self, batch, metrics: dict):
        start = time.perf_counter()
        selection = self._selection or self._select_and_reflect(batch, metrics)
        self._selection = None
        x, subgroups, adv = selection["inputs"], selection["subgroups"], selection["adv"]
        outcome, reflected = selection["outcome"], selection["reflected"]
        index, correct, reward, spans = x["index"], x["correct"], x["reward"], x["spans"]
        if outcome is not None and outcome.replaced_rows:
            if row_dump.enabled():
                self._dump_whole_batch_recompute(batch)
            adv, _ = care_advantages(
                index, correct, reward, spans.think_len, spans.answer_len, x["embeddings"], x["old_lp_score"],
                self.care.advantage, subgroups=subgroups, reflected=reflected,
            )
        mask, response_mask_nested = x["mask"], x["response_mask_nested"]
        token_adv = region_token_advantages(
            adv,
            mask,
            spans.think_mask,
            spans.answer_mask,
            self.care.region.mode,
            tau_pos=self.care.region.tau_pos,
            eps_w=self.care.region.eps_w,
            correct=correct,
        )
        if not torch.isfinite(token_adv).all():
            raise FloatingPointError("CARE produced non-finite token advantages")

        metrics.update(
            care_diagnostics(adv, subgroups, index, correct, reward, eps=self.care.advantage.eps, reflected=reflected)
        )
        metrics["care/accuracy"] = correct.float().mean().item()
        metrics.update(x["verifier_faults"])
        # Which dataset rows this step trained on (a resumed run must consume the same ones).
        metrics["data/prompt_index_crc"] = float(zlib.crc32(json.dumps(x["prompt_indices"]).encode()))
        # CARE's own work in the step: subgroups and RGR (in the old-log-prob stage) and the advantages
        metrics["timing_s/care_advantage"] = selection["seconds"] + time.perf_counter() - start
        self._write_events(index, correct, reward, adv, subgroups, reflected)

        nested = {
            "advantages": response_to_nested(token_adv, response_mask_nested),
            "returns": response_to_nested(token_adv, response_mask_nested),
        }
        stored = tq.kv_batch_put(
            keys=batch.keys, partition_id=batch.partition_id, fields=TensorDict(nested, batch_size=len(batch))
        )
        if row_dump.enabled():
            self._dump_rows(batch, "post", correct=correct, reward=reward, adv=adv, roles=subgroups.role,
                            reflected=reflected, k_prime=subgroups.k_prime,
                            replaced_rows=outcome.replaced_rows if outcome else [],
                            sources=outcome.sources if outcome else {})
        return stored

    DUMP_FIELDS = ("uid", "prompts", "responses", "response_mask", "loss_mask", "position_ids", "multi_modal_inputs",
                   "old_log_probs", "ref_log_prob", "rollout_log_probs", "rm_scores", "advantages", EMBED_KEY,
                   POOL_FIELD, "extra_fields", "extra_info")

    def _dump_rows(self, batch, stage: str, **extra) -> None:
        """Every row's fields for the end-to-end tests ($CARE_VERL_ROW_DUMP; see row_dump)."""
        fields = {}
        for name in self.DUMP_FIELDS:  # a field may not exist yet (advantages) or at all (loss_mask)
            try:
                fields[name] = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                                               select_fields=[name])[name]
            except Exception:
                continue
        extra = {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in extra.items()}
        row_dump.dump_rows(self.global_steps, stage, fields, {"keys": list(batch.keys), **extra})

    def _write_events(self, index, correct, reward, adv, subgroups, reflected) -> None:
        """Append one JSON line per group (anchor, negatives, K', advantages) when configured."""
        if not self._events_path:
            return
        role = subgroups.role.tolist()
        with open(self._events_path, "a") as fp:
            for g in torch.unique(index).tolist():
                rows = (index == g).nonzero().flatten().tolist()
                event: dict[str, Any] = {
                    "step": self.global_steps,
                    "group": g,
                    "rows": rows,
                    "roles": [role[r] for r in rows],
                    "k_prime": int(subgroups.k_prime[rows[0]]),
                    "correct": [bool(correct[r]) for r in rows],
                    "reward": [float(reward[r]) for r in rows],
                    "advantage": [float(adv[r]) for r in rows],
                    "reflected": [bool(reflected[r]) for r in rows],
                }
                fp.write(json.dumps(event) + "\n")
