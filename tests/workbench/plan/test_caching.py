"""LRU + TTL response cache against hand-checked traces; Zipf keys; sweeps; bad input."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import ConfigError
from workbench.plan.caching import cache_sweep, simulate_cache, zipf_keys
from workbench.plan.traces import read_trace_csv

KEYS = ["a", "b", "a", "c", "a", "a", "b", "c"]
TIMES = [0, 1, 2, 3, 11, 12, 13, 14]


def test_lru_without_ttl_by_hand():
    """max_entries 2: a miss [a]; b miss [a b]; a hit [b a]; c miss, evicts b [a c]; a hit [c a];
    a hit; b miss, evicts c [a b]; c miss, evicts a [b c]: 3 hits, 5 misses, 3 evictions."""
    r = simulate_cache(KEYS, max_entries=2)
    assert (r.hits, r.misses, r.evictions, r.expirations) == (3, 5, 3, 0)
    assert r.hit_rate == pytest.approx(3 / 8)
    # max_entries 3 holds every key: only the three first sightings miss
    assert simulate_cache(KEYS, max_entries=3).hits == 5
    assert simulate_cache(KEYS, max_entries=0).hits == 0


def test_lru_with_ttl_by_hand():
    """max_entries 2, TTL 10 s:
    t0 a miss (a@0); t1 b miss (b@1); t2 a hit; t3 c miss, evicts b (LRU);
    t11: a (stored at 0) expired at 10, so a misses and is stored again (a@11);
    t12 a hit; t13: c (stored at 3) expires exactly now; b misses (b@13);
    t14 c misses, evicts a (LRU). 2 hits, 6 misses, 2 evictions, 2 expirations."""
    r = simulate_cache(KEYS, TIMES, max_entries=2, ttl_s=10, usd_per_million=2.0)
    assert (r.hits, r.misses, r.evictions, r.expirations) == (2, 6, 2, 2)
    assert r.usd_saved_per_million_requests == pytest.approx(2.0 * 2 / 8)
    assert r.usd_per_million_requests == pytest.approx(2.0 * 6 / 8)


def test_zipf_keys_follow_the_law_and_the_seed():
    keys = zipf_keys(50_000, 100, exponent=1.0, seed=0)
    assert keys == zipf_keys(50_000, 100, exponent=1.0, seed=0)
    harmonic = sum(1 / k for k in range(1, 101))
    assert keys.count("k1") / len(keys) == pytest.approx(1 / harmonic, rel=0.03)
    assert keys.count("k2") / len(keys) == pytest.approx(0.5 / harmonic, rel=0.05)
    assert set(keys) <= {f"k{i}" for i in range(1, 101)}


def test_sweep_hit_rate_grows_with_max_entries_and_ttl():
    keys = zipf_keys(5000, 500, exponent=1.1, seed=1)
    times = np.arange(len(keys)) * 0.01  # 100 req/s
    frame = cache_sweep(
        keys, times, max_entries=[0, 10, 50, 200, 500], ttls_s=[None, 5.0], usd_per_million=4.0
    )
    no_ttl = frame[frame["ttl_s"].isna()]
    assert (np.diff(no_ttl["hit_rate"]) >= 0).all()  # LRU is a stack algorithm
    full = no_ttl[no_ttl["max_entries"] == 500].iloc[0]
    assert full["hit_rate"] == pytest.approx(1 - len(set(keys)) / len(keys))  # only cold misses
    with_ttl = frame[frame["ttl_s"] == 5.0]
    # with room for every key, nothing is evicted and a TTL can only take entries away
    roomy = with_ttl.iloc[-1]
    assert roomy["evictions"] == 0 and roomy["expirations"] > 0
    assert roomy["hit_rate"] < full["hit_rate"]
    assert np.allclose(frame["usd_saved_per_million_requests"], 4.0 * frame["hit_rate"])


def test_recorded_trace_with_keys(tmp_path):
    path = tmp_path / "requests.csv"
    path.write_text("t,key\n" + "".join(f"{t},{k}\n" for t, k in zip(TIMES, KEYS, strict=True)))
    trace = read_trace_csv(path, time_column="t", key_column="key")
    r = simulate_cache(trace, max_entries=2, ttl_s=10)
    assert (r.hits, r.expirations) == (2, 2)


def test_bad_cache_input():
    with pytest.raises(ConfigError, match="max_entries=-1"):
        simulate_cache(KEYS, max_entries=-1)
    with pytest.raises(ConfigError, match="TTL needs arrival times"):
        simulate_cache(KEYS, max_entries=2, ttl_s=5)
    with pytest.raises(ConfigError, match="ttl_s=0"):
        simulate_cache(KEYS, TIMES, max_entries=2, ttl_s=0)
    with pytest.raises(ConfigError, match="keys is empty"):
        simulate_cache([], max_entries=2)
    with pytest.raises(ConfigError, match=r"times_s\[1\]=0.0 comes before"):
        simulate_cache(["a", "b"], [1.0, 0.0], max_entries=1)
    with pytest.raises(ConfigError, match="n_keys"):
        zipf_keys(10, 0)
