"""Response cache: least recently used entries go first, and every entry expires after a TTL.

Keys hash the model, its version and every input's name, datatype, shape and bytes (BLAKE2b),
so equal requests hit whatever their JSON or binary encoding. Used from the event loop only.

Example
-------
>>> import numpy as np
>>> cache = ResponseCache(max_entries=2, ttl_s=60)
>>> key = cache.key("m", "1", {"x": np.zeros((1, 2), np.float32)})
>>> cache.put(key, {"y": np.ones(1)})
>>> cache.get(key)["y"].tolist()
[1.0]
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np


class ResponseCache:
    """LRU + TTL map from input bytes to model outputs."""

    def __init__(
        self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.clock = clock
        self._entries: OrderedDict[bytes, tuple[float, dict[str, np.ndarray]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(model: str, version: str, inputs: dict[str, np.ndarray]) -> bytes:
        digest = hashlib.blake2b(f"{model}\0{version}".encode(), digest_size=20)
        for name in sorted(inputs):
            array = inputs[name]
            digest.update(f"\0{name}\0{array.dtype.str}\0{array.shape}\0".encode())
            digest.update(np.ascontiguousarray(array).data)
        return digest.digest()

    def get(self, key: bytes) -> dict[str, np.ndarray] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self.clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: bytes, outputs: dict[str, np.ndarray]) -> None:
        for array in outputs.values():
            array.flags.writeable = False  # a cached answer must never change under a reader
        self._entries[key] = (self.clock() + self.ttl_s, outputs)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
