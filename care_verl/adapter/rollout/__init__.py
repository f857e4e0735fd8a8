"""The rollout path: the multimodal agent loop with its per-worker processor cache, the CPU ``hf``
rollout server, rollout settings, and the replay buffer's poll interval.
"""
