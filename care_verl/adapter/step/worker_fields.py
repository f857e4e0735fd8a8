"""Actor and reference calls fetch only the TransferQueue fields a worker reads.

verl 0.9.1's v1 trainer hands each worker call a ``KVBatchMeta`` whose ``fields`` is ``None`` or
every field stored so far, and each worker then fetches every field of every row it is sent
(verl/utils/transferqueue_utils.py:309). Most of those fields only the driver reads: the prompt
text and chat messages, the dataset's reward metadata, the agent loop's bookkeeping, the
verifier's per-row details. On the CPU demo that fetch (pickling and unpickling object columns
per worker call) was ~10 % of the step (benchmarks/RESULTS.md, issue 13).

:class:`WorkerFieldsTrainer` is verl's sync trainer with the old-log-prob, reference and update
calls sent every stored field except :data:`DRIVER_ONLY_FIELDS`. A drop list, not a keep list:
a field a custom loss or model adds still reaches the worker. ``care.rollout.select_worker_fields
=false`` sends every field, as verl does. With ``$CARE_VERL_FIELD_PARITY`` and the row dump set
(tests) each step's first old-log-prob and reference calls are repeated with every field and both
results dumped (``step<N>_all_fields_<call>.pt``), so a test can check they are identical.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import transfer_queue as tq

from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from care_verl.adapter.step import row_dump
from care_verl.adapter.step.care_settings import care_settings_from_config

from care_verl.adapter.step.trainer_mode import WORKER_FIELDS_TRAINER_MODE as TRAINER_MODE

PARITY_ENV = "CARE_VERL_FIELD_PARITY"

# Fields the driver reads (advantages, metrics, validation, RGR, trackers) and no actor, reference
# or loss code in verl 0.9.1 or care_verl does (grep of verl/workers, verl/trainer/ppo/core_algos.py
# and care_verl/adapter/step/embeddings.py). tests/e2e/test_care_step.py checks the claim: the
# log-probs and embeddings computed without them are bit-identical to those computed with them.
DRIVER_ONLY_FIELDS = (
    "prompt", "raw_prompt", "ability", "data_source", "interaction_kwargs", "tools_kwargs", "reward_model",
    "session_id", "mm_processor_kwargs", "mm_processor_output", "metrics", "extra_fields",
)


def worker_fields(stored: list[str], skip: frozenset[str]) -> list[str]:
    """The fields of ``stored`` a worker call fetches: all but ``skip``, in stored order."""
    return [name for name in stored if name not in skip]


@register_trainer(TRAINER_MODE)
class WorkerFieldsTrainer(PPOTrainerSync):
    """verl's synchronous v1 trainer whose worker calls fetch only the fields workers read."""

    # Outputs the all-fields parity dump compares (subclasses add theirs: CARE's embeddings).
    PARITY_OLD_FIELDS: tuple[str, ...] = ("old_log_probs", "entropy")

    def __init__(self, config):
        from omegaconf import open_dict

        # verl's v1 trainer compares its mode *name* with "sync" to pick the replay buffer, the
        # refill policy and checkpoint contents (trainer_base.py:153,731,902,1004,1499). The class
        # is already chosen by now, so behave exactly as verl's sync trainer from here on.
        with open_dict(config):
            config.trainer.v1.trainer_mode = "sync"
        super().__init__(config)
        select = care_settings_from_config(config).rollout.select_worker_fields
        self._skip_fields = frozenset(DRIVER_ONLY_FIELDS) if select else frozenset()
        self._parity_steps: set[tuple[str, int]] = set()

    @contextmanager
    def _sending_worker_fields(self, batch):
        """``batch.fields`` narrowed to what workers read for the duration of one worker call; yields
        the fields stored at the call (``None`` when nothing is narrowed)."""
        if not self._skip_fields:
            yield None
            return
        before = batch.fields
        stored = tq.get_client().kv_retrieve_meta(keys=batch.keys, partition_id=batch.partition_id, create=False)
        batch.fields = worker_fields(stored.field_names, self._skip_fields)
        try:
            yield list(stored.field_names)
        finally:
            batch.fields = before

    def _compute_old_log_prob(self, batch, metrics: dict):
        with self._sending_worker_fields(batch) as stored:
            sent = batch.fields
            out = super()._compute_old_log_prob(batch, metrics)
        self._dump_all_fields_parity("old", batch, stored, sent, self.PARITY_OLD_FIELDS, super()._compute_old_log_prob)
        return out

    def _compute_ref_log_prob(self, batch, metrics: dict):
        with self._sending_worker_fields(batch) as stored:
            sent = batch.fields
            out = super()._compute_ref_log_prob(batch, metrics)
        self._dump_all_fields_parity("ref", batch, stored, sent, ("ref_log_prob",), super()._compute_ref_log_prob)
        return out

    def _update_actor(self, batch, metrics: dict):
        with self._sending_worker_fields(batch):
            return super()._update_actor(batch, metrics)

    def _dump_all_fields_parity(self, call: str, batch, stored, sent, outputs, compute) -> None:
        """Tests only ($CARE_VERL_FIELD_PARITY with the row dump): the step's first ``call`` repeated
        with every field.

        Writes ``step<N>_all_fields_<call>.pt`` with the stored ``outputs`` from the selected-fields
        call (``selected_*``), from the all-fields call (``all_*``), the fields stored at the
        selected call and those it sent; then puts
        the selected-fields values back, so the run continues as without the dump."""
        if not (os.environ.get(PARITY_ENV) and row_dump.enabled() and self._skip_fields):
            return
        if (call, self.global_steps) in self._parity_steps:
            return
        self._parity_steps.add((call, self.global_steps))
        selected = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=list(outputs))
        before, batch.fields = batch.fields, None
        try:
            compute(batch, {})
        finally:
            batch.fields = before
        full = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=list(outputs))
        dump = {**{f"selected_{k}": selected[k] for k in outputs}, **{f"all_{k}": full[k] for k in outputs}}
        row_dump.dump_rows(self.global_steps, f"all_fields_{call}", dump,
                           {"fields_sent": list(sent or []), "fields_stored": list(stored or [])})
        tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=selected)
