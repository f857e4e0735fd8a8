"""Names of the v1 trainer modes care_verl registers (kept import-light for config code)."""

CARE_TRAINER_MODE = "care_sync"
# Every other estimator (GRPO, DAPO, GSPO...): verl's sync trainer whose worker calls fetch only the
# fields workers read (care_verl.adapter.step.worker_fields; care.rollout.select_worker_fields).
WORKER_FIELDS_TRAINER_MODE = "care_verl_sync"
