"""A bounded, content-keyed cache of multimodal processor output, one per agent-loop worker.

verl 0.9.1 runs the full HF processor twice per rollout (once to build the prompt tokens, once
more in ``AgentLoopWorker._compute_multi_modal_inputs``), so ``2·n`` passes over the same image
per prompt (``3·n`` when reward workers score asynchronously). The G rollouts of a prompt run in
one worker (``AgentLoopWorkerTQ._run_prompt``), so a per-worker cache turns this into one pass
per prompt. Two kinds of entries share one LRU of ``max_entries``:

- ``prompt`` entries, keyed by (chat messages, image digests, processor kwargs): the prompt ids and
  the processor features captured while building them;
- ``media`` entries, keyed by (image digests, processor kwargs): the text-independent features
  (``pixel_values``, ``image_grid_thw``, ...) that post-processing attaches to every row.

Concurrent rollouts of one prompt wait on the first one's computation instead of each missing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional

# Processor outputs that depend on the text, not the media: never shared between rows.
TEXT_DEPENDENT_KEYS = frozenset({"input_ids", "attention_mask", "mm_token_type_ids"})


def image_digest(image: Any) -> str:
    """Content hash of one decoded image (mode, size and pixels); equal pixels give equal digests."""
    h = hashlib.blake2b(digest_size=16)
    if hasattr(image, "tobytes") and hasattr(image, "size"):
        h.update(f"{getattr(image, 'mode', '')}|{image.size}".encode())
        h.update(image.tobytes())
    elif isinstance(image, (bytes, bytearray)):
        h.update(bytes(image))
    else:
        raise TypeError(f"cannot hash an image of type {type(image).__name__}")
    return h.hexdigest()


def _json_default(obj: Any) -> str:
    if isinstance(obj, (bytes, bytearray)) or (hasattr(obj, "tobytes") and hasattr(obj, "size")):
        return "img:" + image_digest(obj)
    if hasattr(obj, "tolist"):
        return json.dumps(obj.tolist(), default=_json_default)
    return repr(obj)


def fingerprint(obj: Any) -> str:
    """Stable hash of a JSON-like object (messages, kwargs); images inside are hashed by content."""
    text = json.dumps(obj, sort_keys=True, default=_json_default)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def media_key(images: list[Any], processor_kwargs: Optional[dict]) -> tuple:
    """Key of the text-independent features: image contents in order plus the processor kwargs."""
    return ("media", tuple(image_digest(i) for i in images), fingerprint(dict(processor_kwargs or {})))


def prompt_key(messages: Any, images: list[Any], processor_kwargs: Optional[dict]) -> tuple:
    """Key of a prompt build: the chat messages, the decoded images and the processor kwargs."""
    return ("prompt", fingerprint(messages), *media_key(images, processor_kwargs)[1:])


def media_features(processor_output: dict) -> dict:
    """The entries of a processor output that do not depend on the text (shared across rows)."""
    return {k: v for k, v in processor_output.items() if k not in TEXT_DEPENDENT_KEYS}


def nbytes(value: Any) -> int:
    """Bytes held by the tensors/arrays in ``value`` (dicts, lists, tuples and dataclasses walked)."""
    if hasattr(value, "element_size") and hasattr(value, "nelement"):
        return int(value.element_size() * value.nelement())
    if hasattr(value, "nbytes") and not isinstance(value, (bytes, bytearray)):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    if hasattr(value, "__dataclass_fields__"):
        return sum(nbytes(getattr(value, f)) for f in value.__dataclass_fields__)
    return 0


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class MMProcessorCache:
    """LRU of at most ``max_entries`` processor results and ``max_bytes`` of tensors (the newest
    entry always stays); safe from the event loop and threads."""

    def __init__(self, max_entries: int, max_bytes: Optional[int] = None):
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = int(max_entries)
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self.bytes = 0
        self._sizes: dict[tuple, int] = {}
        self._entries: OrderedDict[tuple, Any] = OrderedDict()
        self._pending: dict[tuple, asyncio.Future] = {}
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: tuple) -> bool:  # a peek: not counted as a hit or a miss
        return key in self._entries

    def peek(self, key: tuple) -> Optional[Any]:
        """The cached value or None, without counting a hit or a miss."""
        with self._lock:
            return self._entries.get(key)

    def get(self, key: tuple) -> Optional[Any]:
        """The cached value (counted as a hit) or None (counted as a miss)."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.stats.hits += 1
                return self._entries[key]
            self.stats.misses += 1
            return None

    def put(self, key: tuple, value: Any) -> None:
        size = nbytes(value)  # tensors shared by two entries count twice: a conservative bound
        with self._lock:
            self.bytes -= self._sizes.pop(key, 0)
            self._entries[key] = value
            self._entries.move_to_end(key)
            self._sizes[key] = size
            self.bytes += size
            while len(self._entries) > self.max_entries or (
                self.max_bytes is not None and self.bytes > self.max_bytes and len(self._entries) > 1
            ):
                old, _ = self._entries.popitem(last=False)
                self.bytes -= self._sizes.pop(old, 0)
                self.stats.evictions += 1

    async def get_or_compute(self, key: tuple, compute: Callable[[], Awaitable[Any]]) -> Any:
        """Return the cached value, or compute it once while concurrent callers of ``key`` wait."""
        value = self.get(key)
        if value is not None:
            return value
        pending = self._pending.get(key)
        if pending is not None:
            # A sibling rollout is computing it right now: its result is ours (a hit, not a pass).
            with self._lock:
                self.stats.misses -= 1
                self.stats.hits += 1
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            value = await compute()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            self._pending.pop(key, None)
        future.set_result(value)
        self.put(key, value)
        return value


_WORKER_CACHE: Optional[MMProcessorCache] = None


def install_worker_cache(max_entries: int, max_bytes: Optional[int] = None) -> MMProcessorCache:
    """Give this process a fresh cache; an agent-loop worker is one Ray actor process."""
    global _WORKER_CACHE
    _WORKER_CACHE = MMProcessorCache(max_entries, max_bytes)
    return _WORKER_CACHE


def worker_cache() -> Optional[MMProcessorCache]:
    """This process's cache, or None where no cached worker runs (verl's stock path)."""
    return _WORKER_CACHE


def reset_worker_cache() -> None:
    """Drop this process's cache (tests build several workers in one process)."""
    global _WORKER_CACHE
    _WORKER_CACHE = None
