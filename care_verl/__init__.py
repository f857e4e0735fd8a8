"""care_verl: CARE (Contrastive Anchored REflection) for multimodal RLVR on verl.

This top-level module imports nothing, so `care_verl.core` stays importable with torch alone.
"""

__version__ = "0.1.0"
