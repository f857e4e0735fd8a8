"""Launch glue for runs at scale: one training command, many seeds, Slurm/Kubernetes, result tables.

- :mod:`care_verl.launch.train`: build (and run) the ``python -m care_verl.main`` command for one
  run: run directory, checkpoints, resume, seed keys, and the overrides a pre-started Ray cluster
  needs.
- :mod:`care_verl.launch.seeds`: one run per seed (locally, printed, or as a Slurm job array).
- :mod:`care_verl.launch.aggregate`: the paper-style table (mean ± std over seeds) from each
  run's ``eval/summary.json``.
- :mod:`care_verl.launch.slurm`: Slurm hostlist expansion (for ``launch/slurm/care.sbatch``).
- :mod:`care_verl.launch.ray_cluster`: wait for a Ray cluster to have N nodes; a local
  multi-node Ray cluster on one machine (tests, rehearsals).
- :mod:`care_verl.launch.k8s`: render ``launch/k8s/rayjob.yaml`` for a recipe / node count.
- :mod:`care_verl.launch.gpu_check`: staged self-check of a GPU node (environment, CARE math on
  CUDA vs CPU, the smoke preset's config, the tiny CARE run on one GPU), a JSON report.

Nothing here imports verl; the training itself is ``care_verl.main``.
"""
