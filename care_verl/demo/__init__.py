"""The CPU demo (``python -m care_verl.demo``) and the GRPO-vs-CARE comparison (``python -m care_verl.compare``).

- :mod:`care_verl.demo.main`: build the tiny model, cold-start SFT, CARE RL, plots, summary.
- :mod:`care_verl.demo.sft`: cold-start SFT stopped early by held-out accuracy (verl's SFT trainer,
  run through :mod:`care_verl.adapter.tools.sft`).
- :mod:`care_verl.demo.stages`: the stages as subprocesses with progress bars.
- :mod:`care_verl.demo.compare`: GRPO vs CARE vs CARE without RGR over seeds, CARE ablations, RGR modes.
- :mod:`care_verl.demo.analysis`: metrics, signature and aggregation (pure functions).
- :mod:`care_verl.demo.stats`: t-intervals, paired differences, Wilson intervals (pure functions).
- :mod:`care_verl.demo.sft_data`: SFT rows, including the reflection rows built around ``care.rgr.cue``.
- :mod:`care_verl.demo.plots`: PNGs.

Everything that touches verl lives in :mod:`care_verl.adapter` (``sft``, ``replay_buffer``).

See docs/demo.md.
"""
