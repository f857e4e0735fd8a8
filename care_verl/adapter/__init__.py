"""The verl adapter: the only package of care_verl that imports verl internals.

- ``register``: what the ``verl.plugins`` entry point loads in every process.
- ``platform_cpu`` / ``hf_rollout`` / ``patches``: the CPU runtime.
- ``runtime``: config defaults for machines without an accelerator, and start-up validation.
- ``main``: the Hydra entry point behind ``python -m care_verl.main``; ``validate``: start-up checks.
- ``trainer`` / ``rgr`` / ``embeddings`` / ``care_settings``: the CARE step on verl's v1 trainer.
- ``replay_buffer``: verl's sync replay buffer with a configurable poll interval.
- ``sft``: verl's SFT trainer in one CPU process with a per-checkpoint hook (the demo's cold start).
- ``checkpoint_merge``: verl's FSDP checkpoint merger (evaluation of training checkpoints).
- ``faults``: named fault-injection points for the reliability tests.
"""
