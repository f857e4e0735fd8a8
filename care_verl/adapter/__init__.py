"""The verl adapter: the only package of care_verl that imports verl internals.

- ``register``: what the ``verl.plugins`` entry point loads in every process.
- ``platform_cpu`` / ``hf_rollout`` / ``patches``: the CPU runtime.
- ``runtime``: config defaults for machines without an accelerator, and start-up validation.
- ``main``: the Hydra entry point behind ``python -m care_verl.main``.
"""
