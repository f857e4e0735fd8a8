"""The verl adapter: the only package of care_verl that imports verl internals, grouped by job.

- ``step/``: the CARE step on verl's v1 trainer (trainer, reasoning embeddings, RGR, ``care.*`` settings).
- ``rollout/``: the rollout path (multimodal agent loop + processor cache, the CPU ``hf`` server,
  replay-buffer polling).
- ``runtime/``: the ``cpu`` platform and the narrow patches on verl 0.9.1 (each with verl file:line).
- ``entry/``: ``python -m care_verl.main`` (CLI, sweeps, composition, start-up validation,
  plugin registration, trackers).
- ``tools/``: verl's SFT trainer and checkpoint merger for the demo and evaluation, the metrics
  reader, fault-injection points for the reliability tests.
"""
