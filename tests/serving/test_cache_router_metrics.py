"""The response cache (LRU + TTL), cascade confidence, and the Prometheus exposition."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.cache import ResponseCache
from serving.metrics import ServingMetrics
from serving.router import confidence


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _key(cache: ResponseCache, value: float, dtype=np.float32, model: str = "m"):
    return cache.key(model, "1", {"x": np.full((1, 2), value, dtype)})


def test_cache_evicts_the_least_recently_used_entry():
    cache = ResponseCache(max_entries=2, ttl_s=60)
    a, b, c = (_key(cache, v) for v in (1, 2, 3))
    cache.put(a, {"y": np.array([1.0])})
    cache.put(b, {"y": np.array([2.0])})
    assert cache.get(a) is not None  # a is now the most recently used
    cache.put(c, {"y": np.array([3.0])})
    assert cache.get(b) is None and cache.get(a) is not None and cache.get(c) is not None
    assert len(cache) == 2


def test_cache_entries_expire_after_their_ttl():
    clock = Clock()
    cache = ResponseCache(max_entries=10, ttl_s=5, clock=clock)
    key = _key(cache, 1)
    cache.put(key, {"y": np.array([1.0])})
    clock.now = 4.9
    assert cache.get(key) is not None
    clock.now = 5.0
    assert cache.get(key) is None and len(cache) == 0


def test_cache_keys_separate_models_dtypes_shapes_and_values():
    cache = ResponseCache(max_entries=10, ttl_s=5)
    base = _key(cache, 1)
    assert base == _key(cache, 1)
    assert base != _key(cache, 2)
    assert base != _key(cache, 1, np.float64)
    assert base != _key(cache, 1, model="other")
    assert base != cache.key("m", "1", {"x": np.full((2, 1), 1, np.float32)})


def test_cached_outputs_are_read_only():
    cache = ResponseCache(max_entries=1, ttl_s=5)
    cache.put(b"k", {"y": np.zeros(2)})
    with pytest.raises(ValueError):
        cache.get(b"k")["y"][0] = 1


def test_confidence_max_softmax_and_margin():
    logits = np.array([[2.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(confidence(logits, "max_softmax"), p.max(1))
    top = np.sort(p, 1)
    np.testing.assert_allclose(confidence(logits, "margin"), top[:, -1] - top[:, -2])
    np.testing.assert_allclose(confidence(p, "max_softmax", "probabilities"), p.max(1))
    assert confidence(logits, "margin")[1] == pytest.approx(0.0)


def test_metrics_render_valid_prometheus_text():
    m = ServingMetrics()
    m.requests.inc(("a", "200"), 3)
    m.request_seconds.observe(("a",), 0.003)
    m.request_seconds.observe(("a",), 20.0)
    m.batch_rows.observe(("a",), 4)
    m.energy_per_prediction.set(("a", "main", "profile", "measured"), 0.5)
    m.cost_per_prediction.set(("a", "cascade", "unknown", ""), float("nan"))
    m.failures.inc(('we"ird\\', "x"))
    families = {f.name: f for f in text_string_to_metric_families(m.render().decode())}
    assert families["serving_requests"].samples[0].value == 3
    buckets = {
        s.labels["le"]: s.value
        for s in families["serving_request_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert buckets["0.0025"] == 0 and buckets["0.005"] == 1 and buckets["+Inf"] == 2
    energy = families["serving_energy_joules_per_prediction"].samples[0].labels
    assert energy == {
        "model": "a",
        "role": "main",
        "method": "profile",
        "profile_method": "measured",
    }
    unknown = families["serving_cost_usd_per_prediction"].samples[0]
    assert unknown.labels["method"] == "unknown" and unknown.value != unknown.value  # NaN
    assert families["serving_failures"].samples[0].labels["model"] == 'we"ird\\'


@pytest.mark.parametrize("name", ["protocol", "cache", "router", "metrics"])
def test_the_docstring_examples_run(name):
    import doctest
    import importlib

    module = importlib.import_module(f"serving.{name}")
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
