"""RGR inside verl's v1 trainer: one batched re-decode, verify, replace rows in TransferQueue.

The pure parts (targets, repaired context, the new row's ids and mask) are in
:mod:`care_verl.reflection`. This module does what needs verl: fetch the rows' prompts, images and
responses from TransferQueue, send every repaired context to the rollout servers at once (they
batch concurrent requests), score the results with the configured reward function, and write
the new rows over the old ones (same keys, so the batch size never changes). Their old log-probs
are then recomputed by the caller (``care.rgr.old_log_probs=recompute``) or written here from the
sampling (``rollout``); verl's reference stage, after RGR, scores them.

A generation that fails or a row that would not fit is skipped and counted; it never stops the step.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
import transfer_queue as tq

from care_verl.adapter.tools import faults
from care_verl.adapter.tools.faults import RGR_REQUEST_PREFIX
from care_verl.reflection import RepairPlan, choose_sources, extend_positions, plan_repairs, repaired_response

logger = logging.getLogger(__name__)

ROW_FIELDS = ["prompts", "responses", "position_ids", "raw_prompt", "data_source", "reward_model", "extra_info",
              "extra_fields"]


@dataclass
class RgrOutcome:
    """What RGR did in one step."""

    replaced_rows: list[int] = field(default_factory=list)
    sources: dict[int, int] = field(default_factory=dict)  # row repaired -> row whose reasoning it reused
    metrics: dict[str, float] = field(default_factory=dict)
    examples: list[dict] = field(default_factory=list)  # failed vs repaired response, for the trackers' table


def run_coroutine(coro):
    """Run ``coro`` to completion from sync code, even if this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _item(value, i):
    value = value[i]
    return value.tolist() if hasattr(value, "tolist") and not isinstance(value, torch.Tensor) else value


class RgrRunner:
    """Runs RGR for a trainer (a :class:`care_verl.adapter.step.trainer.CarePPOTrainer`)."""

    def __init__(self, trainer, settings, span_tags):
        self.trainer = trainer
        self.settings = settings
        self.close_variants = span_tags.think.close if span_tags.think is not None else ()
        # an unclosed failure is cut before its answer and end-of-turn tokens (reflection.think_prefix)
        self.answer_open_variants = span_tags.answer.open if span_tags.answer is not None else ()
        tok = trainer.tokenizer
        self.stop_ids = tuple({i for i in (tok.eos_token_id, tok.pad_token_id) if i is not None})
        cue = settings.cue if settings.mode == "repair" else ""
        self.cue_ids = trainer.tokenizer.encode(cue, add_special_tokens=False) if cue else []
        self._reward_fn = None
        self.has_rollout_log_probs = bool(trainer.config.actor_rollout_ref.rollout.calculate_log_probs)
        # the replaced rows' old log-probs from the sampling instead of a recompute call (care_settings)
        self.old_from_rollout = settings.old_log_probs == "rollout"

    # ---- pieces -----------------------------------------------------------------------------
    def reward_fn(self):
        if self._reward_fn is None:
            from verl.utils.import_utils import load_extern_object

            cfg = self.trainer.config.reward.custom_reward_function
            fn = load_extern_object(cfg.path, cfg.name)
            kwargs = dict(cfg.get("reward_kwargs", {}) or {})
            self._reward_fn = (fn, kwargs)
        return self._reward_fn

    def score(self, text: str, row: dict) -> dict:
        fn, kwargs = self.reward_fn()
        gt = (row["reward_model"] or {}).get("ground_truth")
        out = fn(row["data_source"], text, gt, row["extra_info"], **kwargs)
        if inspect.isawaitable(out):
            out = run_coroutine(out)
        return out if isinstance(out, dict) else {"score": float(out), "acc": float(out)}

    def sampling_params(self, budget: int) -> dict:
        rollout = self.trainer.config.actor_rollout_ref.rollout
        s = self.settings
        return {
            "temperature": rollout.temperature if s.temperature is None else s.temperature,
            "top_p": rollout.top_p if s.top_p is None else s.top_p,
            "top_k": rollout.top_k,
            "max_tokens": budget if s.max_tokens is None else min(budget, s.max_tokens),
            "logprobs": True,
            "repetition_penalty": 1.0,
        }

    async def _images(self, messages):
        dataset_cls = type(self.trainer.train_dataset)
        processor = self.trainer.processor
        if processor is None or not hasattr(dataset_cls, "process_vision_info"):
            return None
        patch = getattr(getattr(processor, "image_processor", None), "patch_size", 14)
        images, _videos = await dataset_cls.process_vision_info(
            messages, image_patch_size=patch, config=self.trainer.config.data
        )
        return images

    async def _generate_all(self, plans: list[RepairPlan], rows: dict[int, dict]):
        client = self.trainer.get_llm_client()

        async def one(plan: RepairPlan):
            src = rows[plan.source_row]
            images = await self._images(src["raw_prompt"])
            request_id = f"{RGR_REQUEST_PREFIX}{self.trainer.global_steps}_{plan.row}"
            tag = {faults.REQUEST_ID_KWARG: request_id} if faults.active() else {}
            # A hung engine must not stall training: give up on the row after the timeout.
            return await asyncio.wait_for(
                client.generate(
                    request_id,
                    prompt_ids=src["prompts"] + plan.context_response,
                    sampling_params=self.sampling_params(plan.budget),
                    image_data=images,
                    **tag,
                ),
                timeout=self.settings.generate_timeout_s,
            )

        return await asyncio.gather(*[one(p) for p in plans], return_exceptions=True)

    def _wake(self):
        rollout = self.trainer.config.actor_rollout_ref.rollout
        needs = rollout.name != "hf" and rollout.free_cache_engine
        if needs:  # the engine released weights after sampling; reload the same (current) ones
            self.trainer.checkpoint_manager.update_weights(self.trainer.global_steps)
        return needs

    # ---- the step -----------------------------------------------------------------------------
    def run(self, batch, subgroups, index: torch.Tensor, correct: torch.Tensor, row_keys: list[int]) -> RgrOutcome:
        outcome = RgrOutcome()
        m = outcome.metrics
        targets = subgroups.rgr_targets()
        m["rgr/eligible_groups"] = float(len(targets))
        if self.settings.mode == "off" or len(targets) == 0:
            return outcome
        # Seeded per step and keyed on row content, not position: a resumed step draws the same
        # failures although verl does not fix the batch's row order across launches.
        seed = self.trainer.care.advantage.seed * 1_000_003 + self.trainer.global_steps
        sources = choose_sources(targets, index, correct, self.settings.mode, seed, row_keys)
        needed = sorted(set(targets.tolist()) | set(sources.tolist()))
        keys = [batch.keys[i] for i in needed]
        fields = ROW_FIELDS + (["rollout_log_probs"] if self.has_rollout_log_probs else [])
        fields += ["old_log_probs"] if self.old_from_rollout else []
        fetched = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=fields)
        rows = {}
        for j, i in enumerate(needed):
            rows[i] = {
                "prompts": fetched["prompts"][j].tolist(),
                "responses": fetched["responses"][j].tolist(),
                "position_ids": fetched["position_ids"][j],
                **{k: _item(fetched[k], j) for k in ROW_FIELDS if k not in ("prompts", "responses", "position_ids")},
            }
            for name in ("rollout_log_probs", "old_log_probs"):
                if name in fields:
                    rows[i][name] = fetched[name][j].tolist()
        data_cfg = self.trainer.config.data
        plans, skipped = plan_repairs(
            targets.tolist(), sources.tolist(), {i: r["prompts"] for i, r in rows.items()},
            {i: r["responses"] for i, r in rows.items()}, self.close_variants, self.cue_ids,
            data_cfg.max_prompt_length, data_cfg.max_response_length, self.answer_open_variants, self.stop_ids,
        )
        m["rgr/skipped_too_long"] = float(len(skipped))
        m["rgr/unclosed_think"] = float(sum(plan.unclosed for plan in plans))
        start = time.perf_counter()
        woke = self._wake() if plans else False
        try:
            outputs = run_coroutine(self._generate_all(plans, rows)) if plans else []
        finally:
            if woke:
                self.trainer.checkpoint_manager.sleep_replicas()
        m["timing_s/care_rgr_generate"] = time.perf_counter() - start

        new_fields, new_keys, new_tags, repaired = [], [], [], 0
        outcome.sources = {plan.row: plan.source_row for plan in plans}
        for plan, out in zip(plans, outputs):
            if isinstance(out, asyncio.TimeoutError):
                logger.warning("RGR generation for row %d timed out after %.0f s", plan.row,
                               self.settings.generate_timeout_s)
                m["rgr/timed_out_generation"] = m.get("rgr/timed_out_generation", 0.0) + 1
                continue
            if isinstance(out, BaseException) or not getattr(out, "token_ids", None):
                logger.warning("RGR generation for row %d failed: %r", plan.row, out)
                m["rgr/failed_generation"] = m.get("rgr/failed_generation", 0.0) + 1
                continue
            target = rows[plan.row]
            ids, mask = repaired_response(plan, out.token_ids)
            text = self.trainer.tokenizer.decode(ids, skip_special_tokens=True)
            try:
                score = self.score(text, target)
            except Exception as exc:  # a verifier failure scores 0 rather than stopping the step
                logger.warning("RGR scoring for row %d failed: %r", plan.row, exc)
                score = {"score": 0.0, "acc": 0.0}
            repaired += float(score.get("acc", 0.0)) > 0.5
            outcome.examples.append({
                "row": plan.row, "failed": self.trainer.tokenizer.decode(target["responses"], skip_special_tokens=True),
                "repaired": text, "verdict": "correct" if float(score.get("acc", 0.0)) > 0.5 else "still wrong",
                "score": float(score.get("score", 0.0))})
            new_fields.append(self._row_fields(target, rows[plan.source_row], plan, ids, mask, out, score))
            new_keys.append(batch.keys[plan.row])
            tag = dict(batch.tags[plan.row]) if plan.row < len(batch.tags) else {}
            tag.update(response_len=len(ids), seq_len=len(target["prompts"]) + len(ids))
            new_tags.append(tag)
            outcome.replaced_rows.append(plan.row)
        if new_fields:
            from verl.utils.tensordict_utils import list_of_dict_to_tensordict

            tq.kv_batch_put(keys=new_keys, partition_id=batch.partition_id,
                            fields=list_of_dict_to_tensordict(new_fields), tags=new_tags)
            # Read back what is stored: the cue's tokens must carry response-mask 0.
            stored = tq.kv_batch_get(keys=new_keys, partition_id=batch.partition_id, select_fields=["response_mask"])
            lengths = [len(f["responses"]) for f in new_fields]
            masks = stored["response_mask"]
            # nested when lengths differ; a dense batch would be right-padded, so cut each row to its length
            rows_stored = masks.unbind() if getattr(masks, "is_nested", False) else list(masks)
            m["rgr/masked_tokens"] = float(sum(int((r[:n] == 0).sum()) for r, n in zip(rows_stored, lengths)))
            m["rgr/cue_tokens"] = float(len(self.cue_ids) * len(new_keys))
        m["rgr/generated"] = float(len(outcome.replaced_rows))
        m["rgr/repaired"] = float(repaired)
        m["rgr/success_rate"] = repaired / len(outcome.replaced_rows) if outcome.replaced_rows else 0.0
        return outcome

    def _row_fields(self, target: dict, source: dict, plan: RepairPlan, ids, mask, out, score: dict) -> dict:
        prompt = target["prompts"]
        response = torch.tensor(ids, dtype=torch.long)
        response_mask = torch.tensor(mask, dtype=torch.long)
        rm = torch.zeros(len(ids), dtype=torch.float32)
        rm[-1] = float(score.get("score", 0.0))
        # Sampling log-probs: the reused prefix keeps its sample's (same prompt); the cue was not sampled (0).
        source_lp = source.get("rollout_log_probs")
        prefix_lp = list(source_lp[: len(plan.prefix)]) if source_lp else [0.0] * len(plan.prefix)
        continuation_lp = list(out.log_probs or [0.0] * len(out.token_ids))
        rollout_lp = prefix_lp + [0.0] * len(plan.cue) + continuation_lp
        extra = copy.deepcopy(target["extra_fields"]) if isinstance(target["extra_fields"], dict) else {}
        info = dict(extra.get("reward_extra_info", {}) or {})
        info.update({k: v for k, v in score.items() if k in info or k in ("acc", "format", "score")})
        extra["reward_extra_info"] = info
        extra["care_reflected"] = True
        prompt_len = len(prompt)
        positions = extend_positions(target["position_ids"][..., :prompt_len], len(ids))
        return {
            "responses": response,
            "response_mask": response_mask,
            "loss_mask": response_mask,
            "input_ids": torch.cat([torch.tensor(prompt, dtype=torch.long), response]),
            "attention_mask": torch.ones(prompt_len + len(ids), dtype=torch.long),
            "position_ids": positions,
            "rm_scores": rm,
            "rollout_log_probs": torch.tensor(rollout_lp[: len(ids)], dtype=torch.float32),
            "extra_fields": extra,
            **({"old_log_probs": self.old_log_probs(source, plan, continuation_lp, len(ids))}
               if self.old_from_rollout else {}),
        }

    @staticmethod
    def old_log_probs(source: dict, plan: RepairPlan, continuation_lp: list[float], length: int) -> torch.Tensor:
        """``care.rgr.old_log_probs=rollout``: the repaired row's old log-probs without a forward. The
        reused prefix keeps the actor's own old log-probs of those tokens (computed for the source row,
        same prompt and tokens); the cue has none (response-mask 0: it is not trained); the continuation
        takes the rollout's sampling log-probs, which the CPU runtime's fp32 server computes as the actor
        would (measured <= 1e-6; verl's bypass mode makes the same substitution for every row)."""
        prefix = list(source["old_log_probs"][: len(plan.prefix)])
        return torch.tensor((prefix + [0.0] * len(plan.cue) + continuation_lp)[:length], dtype=torch.float32)
