"""Energy and cost counters follow what ran, against a real server: a cache hit adds no model
joules, a cascade charges the small model per row and the large model per escalated row, and the
labels say the figures come from the bundle's profile (``method="profile"``), not a meter."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from serving_helpers import export_bundle, infer_json, reference, serving

from serving.manifest import BundleError, parse_manifest
from serving.router import confidence

THRESHOLD = 0.8
USD_PER_H = 3.6
UTILISATION = 0.5
# Joules that are sums of powers of two, so the totals compare exactly.
MAIN = {"energy_j_per_item": 0.25, "energy_method": "measured", "throughput_items_per_s": 1000.0}
SMALL = {"energy_j_per_item": 0.125, "energy_method": "measured", "throughput_items_per_s": 4000.0}
LARGE = {"energy_j_per_item": 1.5, "energy_method": "estimated", "throughput_items_per_s": 500.0}


def _usd_per_row(figures: dict) -> float:
    """The export's price of one row: instance price over the rows an hour at the utilisation."""
    return USD_PER_H / (figures["throughput_items_per_s"] * 3600 * UTILISATION)


@pytest.fixture(scope="module")
def server(models_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles")
    priced = {"instance_usd_per_h": USD_PER_H, "utilisation": UTILISATION}
    bundles = [
        export_bundle(
            models_dir / "lin.onnx", out / "c", name="cached", cache=True, profile=MAIN, **priced
        ),
        export_bundle(
            None,
            out / "routed",
            name="routed",
            cascade=(models_dir / "small.onnx", models_dir / "large.onnx", THRESHOLD),
            profiles={"small": SMALL, "large": LARGE},
            **priced,
        ),
        export_bundle(
            None,
            out / "bare",
            name="bare",
            cascade=(models_dir / "small.onnx", models_dir / "large.onnx", THRESHOLD),
            profile=MAIN,  # one profile for two models: no route ran it, so it charges nothing
            **priced,
        ),
    ]
    log = tmp_path_factory.mktemp("log") / "server.log"
    with serving(bundles, log) as srv:
        yield srv


def _snapshot(server, model: str) -> dict[str, float]:
    return {
        "predictions": server.metric("serving_predictions_total", model=model),
        "hit_rows": server.metric("serving_cache_hit_rows_total", model=model),
        "joules": server.metric("serving_energy_joules_total", model=model),
        "usd": server.metric("serving_cost_usd_total", model=model),
    }


def _samples(server, name: str, model: str) -> list:
    from prometheus_client.parser import text_string_to_metric_families

    _, _, body = server.request("GET", "/metrics")
    return [
        s
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == name and s.labels["model"] == model
    ]


def test_a_cache_hit_counts_a_prediction_but_adds_no_model_joules_or_cost(server):
    x = np.random.default_rng(5).standard_normal((3, 8)).astype(np.float32)
    before = _snapshot(server, "cached")
    assert infer_json(server, "cached", x)[0] == 200
    miss = _snapshot(server, "cached")
    assert miss["predictions"] - before["predictions"] == 3
    assert miss["joules"] - before["joules"] == 3 * MAIN["energy_j_per_item"]
    assert miss["usd"] - before["usd"] == pytest.approx(3 * _usd_per_row(MAIN), rel=1e-9)
    assert infer_json(server, "cached", x)[0] == 200  # the same input: answered from the cache
    hit = _snapshot(server, "cached")
    assert server.metric("serving_cache_hits_total", model="cached") >= 1
    assert hit["predictions"] - miss["predictions"] == 3
    assert hit["joules"] == miss["joules"] and hit["usd"] == miss["usd"]
    assert hit["hit_rows"] - miss["hit_rows"] == 3


def test_figures_from_the_profile_say_profile_and_keep_how_the_profile_made_them(server):
    for name in ("serving_energy_joules_per_prediction", "serving_energy_joules_total"):
        (sample,) = _samples(server, name, "cached")
        assert sample.labels == {
            "model": "cached",
            "role": "main",
            "method": "profile",
            "profile_method": "measured",
        }
    (gauge,) = _samples(server, "serving_energy_joules_per_prediction", "cached")
    assert gauge.value == MAIN["energy_j_per_item"]
    (cost,) = _samples(server, "serving_cost_usd_per_prediction", "cached")
    assert cost.labels["method"] == "profile" and cost.value == pytest.approx(_usd_per_row(MAIN))
    _, _, body = server.request("GET", "/metrics")
    lines = [x for x in body.decode().splitlines() if not x.startswith(("#", "serving_live_"))]
    assert lines and not any(re.search(r'[{,]method="measured"', x) for x in lines)  # profile
    # figures never pass for measurements: only the live meter's series measure


def test_a_cascade_charges_small_per_row_and_large_per_escalated_row(server, models_dir):
    x = np.random.default_rng(3).standard_normal((40, 8)).astype(np.float32)
    small = reference(models_dir / "small.onnx", {"input": x})["output"]
    escalated = int((confidence(small, "max_softmax") < THRESHOLD).sum())
    assert 0 < escalated < len(x), "the test data must hold sure and unsure rows"
    role = {r: server.metric("serving_energy_joules_total", model="routed", role=r)
            for r in ("small", "large")}  # fmt: skip
    before = _snapshot(server, "routed")
    assert infer_json(server, "routed", x)[0] == 200
    after = _snapshot(server, "routed")
    small_j, large_j = SMALL["energy_j_per_item"], LARGE["energy_j_per_item"]
    assert after["predictions"] - before["predictions"] == len(x)
    assert after["joules"] - before["joules"] == small_j * len(x) + large_j * escalated
    got_small = server.metric("serving_energy_joules_total", model="routed", role="small")
    got_large = server.metric("serving_energy_joules_total", model="routed", role="large")
    assert got_small - role["small"] == small_j * len(x)
    assert got_large - role["large"] == large_j * escalated
    want_usd = _usd_per_row(SMALL) * len(x) + _usd_per_row(LARGE) * escalated
    assert after["usd"] - before["usd"] == pytest.approx(want_usd, rel=1e-9)
    large_total = [
        s for s in _samples(server, "serving_energy_joules_total", "routed")
        if s.labels["role"] == "large"
    ]  # fmt: skip
    assert large_total[0].labels["profile_method"] == "estimated"  # the large model's own


def test_a_cascade_without_per_model_figures_charges_nothing_and_says_unknown(server):
    x = np.random.default_rng(4).standard_normal((6, 8)).astype(np.float32)
    before = _snapshot(server, "bare")
    assert infer_json(server, "bare", x)[0] == 200
    after = _snapshot(server, "bare")
    assert after["predictions"] - before["predictions"] == 6
    assert after["joules"] == 0 and after["usd"] == 0
    for name in ("serving_energy_joules_per_prediction", "serving_cost_usd_per_prediction"):
        (gauge,) = _samples(server, name, "bare")
        assert gauge.labels["method"] == "unknown" and math.isnan(gauge.value)
    said = [e for e in server.log() if e.get("model") == "bare" and e.get("figure") == "energy"]
    assert said and "profiles=" in said[0]["msg"] and said[0]["level"] == "warning"


def _manifest(models: list[dict]) -> dict:
    cascade = {"small": "s", "large": "l", "threshold": 0.5}
    return {"schema_version": 1, "name": "c", "models": models, "cascade": cascade}


def test_manifests_without_per_model_figures_load_and_bad_ones_are_named():
    old = [{"file": "models/s.onnx", "role": "small"}, {"file": "models/l.onnx", "role": "large"}]
    assert [m.profile for m in parse_manifest(_manifest(old)).models] == [{}, {}]
    with pytest.raises(BundleError, match=r"models\[1\]\.profile must be an object"):
        parse_manifest(_manifest([old[0], {**old[1], "profile": [1.5]}]))
