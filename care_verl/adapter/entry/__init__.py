"""The entry point: ``python -m care_verl.main``'s command line (Hydra flags, sweeps), config
composition with local artefacts, start-up validation, plugin registration, trackers.
"""
