"""Response caching: hit rate and money saved by an LRU cache with a size bound and a TTL.

The cache holds up to ``max_entries`` responses, keyed by the request (its input's hash in a real
server). A request whose key is cached and fresh is a hit: no inference runs and the entry becomes
the most recently used. Otherwise it is a miss: the model runs and the response is stored, evicting
the least recently used entry when full. An entry expires ``ttl_s`` seconds after it was stored
(a hit does not extend it) and is dropped at that instant: a request at exactly
``stored + ttl_s`` misses. This is ``cachetools.TTLCache``'s behaviour. ``max_entries`` and
``ttl_s`` are the bundle manifest's ``cache`` settings (:class:`serving.manifest.Cache`).

Money: every miss costs one inference at ``usd_per_million`` (per million items); hits are taken
as free (a lookup costs microseconds against a model call), so the saving is
``hit_rate x usd_per_million`` per million requests.

Key traces come from :func:`zipf_keys` (seeded, a few keys popular and a long tail), or from a
recorded trace (:func:`workbench.plan.traces.read_trace_csv` with ``key_column=``).

Example
-------
>>> r = simulate_cache(["a", "b", "a", "c", "b", "a"], max_entries=2)
>>> r.hits, r.misses, r.evictions
(1, 5, 3)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from workbench.checks import number, whole
from workbench.errors import ConfigError
from workbench.plan.traces import ArrivalTrace, trace_from_times


def zipf_keys(n_requests: int, n_keys: int, exponent: float = 1.0, seed: int = 0) -> list[str]:
    """``n_requests`` keys drawn from ``n_keys`` with probability proportional to
    ``1 / rank**exponent`` (a bounded Zipf law); key names are ``"k1"`` (most popular) onwards.

    >>> keys = zipf_keys(1000, 50, exponent=1.2, seed=0)
    >>> keys.count("k1") > keys.count("k50")
    True
    """
    whole("n_requests", n_requests, minimum=1)
    whole("n_keys", n_keys, minimum=1)
    number("exponent", exponent, minimum=0, fix="0 is uniform")
    weights = 1.0 / np.arange(1, n_keys + 1) ** exponent
    ranks = np.random.default_rng(seed).choice(n_keys, size=n_requests, p=weights / weights.sum())
    return [f"k{r + 1}" for r in ranks]


@dataclass
class CacheResult:
    """Outcome of one cache setting over a key trace.

    ``evictions`` count entries pushed out by the size bound, ``expirations`` entries dropped by
    the TTL. Money fields are ``None`` without a cost per million.
    """

    max_entries: int
    ttl_s: float | None
    requests: int
    hits: int
    misses: int
    evictions: int
    expirations: int
    hit_rate: float
    usd_per_million_requests: float | None = None
    usd_saved_per_million_requests: float | None = None


def simulate_cache(
    keys: Sequence[str] | ArrivalTrace,
    times_s: Sequence[float] | None = None,
    *,
    max_entries: int,
    ttl_s: float | None = None,
    usd_per_million: float | None = None,
) -> CacheResult:
    """Replay ``keys`` (or a trace with keys) through an LRU cache of ``max_entries`` entries.

    ``times_s`` (sorted arrival seconds, one per key) is needed for a TTL; a trace brings its own.
    ``max_entries=0`` is no cache (every request misses).
    """
    keys, times = _keys_and_times(keys, times_s)
    whole("max_entries", max_entries, minimum=0, fix="0 is no cache")
    if ttl_s is not None:
        number("ttl_s", ttl_s, minimum=0, open_low=True, fix="or None for no expiry")
        if times is None:
            raise ConfigError("a TTL needs arrival times: pass times_s= or a trace with keys")
    if usd_per_million is not None:
        number("usd_per_million", usd_per_million, minimum=0)
    recency: OrderedDict[str, float] = OrderedDict()  # least recently used first
    stored: OrderedDict[str, float] = OrderedDict()  # oldest stored first = first to expire
    hits = evictions = expirations = 0
    for i, key in enumerate(keys):
        now = 0.0 if times is None else times[i]
        if ttl_s is not None:
            while stored and next(iter(stored.values())) + ttl_s <= now:
                old, _ = stored.popitem(last=False)
                del recency[old]
                expirations += 1
        if key in recency:
            hits += 1
            recency.move_to_end(key)
            continue
        if max_entries == 0:
            continue
        if len(recency) >= max_entries:
            old, _ = recency.popitem(last=False)
            del stored[old]
            evictions += 1
        recency[key] = now
        stored[key] = now
    n = len(keys)
    rate = hits / n
    return CacheResult(
        max_entries=int(max_entries),
        ttl_s=ttl_s,
        requests=n,
        hits=hits,
        misses=n - hits,
        evictions=evictions,
        expirations=expirations,
        hit_rate=rate,
        usd_per_million_requests=None if usd_per_million is None else (1 - rate) * usd_per_million,
        usd_saved_per_million_requests=None if usd_per_million is None else rate * usd_per_million,
    )


def _keys_and_times(
    keys: Sequence[str] | ArrivalTrace, times_s: Sequence[float] | None
) -> tuple[list[str], list[float] | None]:
    if isinstance(keys, ArrivalTrace):
        if keys.keys is None:
            raise ConfigError(
                "this trace has no keys; read it with read_trace_csv(..., key_column=NAME)"
            )
        return list(keys.keys), keys.times_s.tolist()
    key_list = [str(k) for k in keys]
    if not key_list:
        raise ConfigError("keys is empty: a cache simulation needs at least one request")
    if times_s is None:
        return key_list, None
    trace = trace_from_times(times_s, keys=key_list, source="times_s")  # checks order and sign
    return key_list, trace.times_s.tolist()


def cache_sweep(
    keys: Sequence[str] | ArrivalTrace,
    times_s: Sequence[float] | None = None,
    *,
    max_entries: Sequence[int],
    ttls_s: Sequence[float | None] = (None,),
    usd_per_million: float | None = None,
) -> pd.DataFrame:
    """:func:`simulate_cache` for every size bound in ``max_entries`` x TTL in ``ttls_s``, one row
    each."""
    keys_list, times = _keys_and_times(keys, times_s)
    rows = [
        asdict(
            simulate_cache(
                keys_list, times, max_entries=size, ttl_s=ttl, usd_per_million=usd_per_million
            )
        )
        for ttl in ttls_s
        for size in max_entries
    ]
    return pd.DataFrame(rows)
