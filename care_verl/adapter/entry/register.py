"""Registrations loaded by verl's ``verl.plugins`` entry point in every process.

verl imports this module whenever ``verl`` itself is imported (``verl/__init__.py:55-76``), in
the driver, the TaskRunner and every Ray worker, so registries filled here exist everywhere.
verl swallows plugin import errors at debug level, so :func:`check_registered` lets the entry
point fail loudly instead. Everything here is idempotent: verl re-imports reward files and a
process may import verl more than once.
"""

from __future__ import annotations

HF_ROLLOUT_ADAPTER = "care_verl.adapter.rollout.hf_rollout.HFServerAdapter"


def _load_hf_replica():
    from care_verl.adapter.rollout.hf_rollout import HFReplica

    return HFReplica


def register_all() -> None:
    """Register the cpu platform, the ``hf`` rollout backend and apply the verl patches."""
    from verl.plugin.platform.platform_manager import PlatformRegistry
    from verl.workers.rollout import base as rollout_base
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    from care_verl.adapter.runtime import patches
    from care_verl.adapter.runtime.platform_cpu import PlatformCPU

    if PlatformRegistry.get("cpu") is not PlatformCPU:
        PlatformRegistry.register("cpu")(PlatformCPU)
    rollout_base._ROLLOUT_REGISTRY[("hf", "async")] = HF_ROLLOUT_ADAPTER
    RolloutReplicaRegistry.register("hf", _load_hf_replica)
    patches.apply_all()
    from care_verl.adapter.runtime.length_filter import patch_overlong_filter_report

    patch_overlong_filter_report()
    from care_verl.adapter.step.embeddings import register_embedding_engines

    register_embedding_engines()
    _register_care_estimator()
    import care_verl.adapter.step.trainer  # noqa: F401  (registers trainer.v1.trainer_mode=care_sync)
    import care_verl.adapter.step.worker_fields  # noqa: F401  (registers trainer.v1.trainer_mode=care_verl_sync)


def _care_estimator_outside_care_trainer(*args, **kwargs):
    raise RuntimeError(
        "algorithm.adv_estimator=care needs reasoning embeddings and the verifier's accuracy, which only "
        "care_verl's trainer provides: launch with `python -m care_verl.main` (it selects "
        "trainer.v1.trainer_mode=care_sync)"
    )


def _register_care_estimator() -> None:
    """Make ``care`` a known estimator name in verl's registry (idempotent)."""
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY

    ADV_ESTIMATOR_REGISTRY.setdefault("care", _care_estimator_outside_care_trainer)


def check_registered() -> None:
    """Raise if the plugin did not load (verl hides plugin import errors)."""
    from verl.plugin.platform.platform_manager import PlatformRegistry
    from verl.workers.rollout import base as rollout_base

    if PlatformRegistry.get("cpu") is None or ("hf", "async") not in rollout_base._ROLLOUT_REGISTRY:
        # Register now to surface the real error instead of verl's silent debug log.
        register_all()


register_all()
