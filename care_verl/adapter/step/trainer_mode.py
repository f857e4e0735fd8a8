"""Name of the v1 trainer mode CARE registers (kept import-light for config code)."""

CARE_TRAINER_MODE = "care_sync"
