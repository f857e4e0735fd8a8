"""The CARE step on verl's v1 trainer: the trainer and its mode switch, reasoning embeddings
from the old-log-prob forward, RGR's generation/re-verification/log-prob recompute, the typed
``care.*`` settings, and per-row dumps for the end-to-end tests.
"""
