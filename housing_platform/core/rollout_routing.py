"""Canary routing: which rows a challenger answers, by a stable hash, so a client sees one model.

A row goes to the challenger when its bucket (0 … :data:`ROUTING_BUCKETS` − 1) is below
``share × ROUTING_BUCKETS``. The bucket comes from the request's routing key (header
``X-Routing-Key``: every row of the request, and every request with that key, gets the same bucket)
or else from the row's own features — the same district always lands on the same model, in every
server replica and after a restart (no per-process seed: 64-bit FNV-1a over the float64 bits and
the category's CRC-32, then the splitmix64 finaliser). Raising the share only adds buckets, so a
row answered by the challenger stays with it.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

ROUTING_BUCKETS = 10_000
_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)


def _finalise(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit moves about half the output bits."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def feature_buckets(numeric: np.ndarray, categories: Sequence[str | None]) -> np.ndarray:
    """Each row's bucket from its features: ``numeric`` (n, k) float64 (NaN for a null), the category per row."""
    bits = np.ascontiguousarray(numeric, dtype=np.float64).view(np.uint64)
    codes = {value: zlib.crc32(str(value).encode()) for value in set(categories)}
    h = np.full(len(bits), _FNV_OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(bits.shape[1]):
            h = (h ^ bits[:, j]) * _FNV_PRIME
        h = (h ^ np.fromiter((codes[c] for c in categories), dtype=np.uint64, count=len(categories))) * _FNV_PRIME
        return (_finalise(h) % np.uint64(ROUTING_BUCKETS)).astype(np.int64)


def key_bucket(key: str) -> int:
    """The bucket of a routing key (every row of a request that sends one)."""
    h = np.array([zlib.crc32(key.encode("utf-8", "surrogatepass"))], dtype=np.uint64)
    with np.errstate(over="ignore"):
        return int(_finalise(h * _FNV_PRIME)[0] % np.uint64(ROUTING_BUCKETS))


def challenger_rows(buckets: np.ndarray, share: float) -> np.ndarray:
    """Mask of the rows the challenger answers at ``share`` (0 < share < 1)."""
    return buckets < round(share * ROUTING_BUCKETS)
