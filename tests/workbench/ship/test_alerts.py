"""The exported Prometheus rules: live J/prediction and cost per 1M drift against the profile.

The thresholds are checked as text against numbers computed here from the manifest, the file's
structure by a parser of its own, and, where ``promtool`` is installed (Debian's ``prometheus``
package ships it; ``PROMTOOL=/path/to/promtool`` points at another), by ``promtool check rules``
and by ``promtool test rules``, which evaluates the alerts over hand-written counter series.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from serving.manifest import Cascade, Cost, Manifest, Slo
from serving.metrics import ServingMetrics
from workbench.errors import ConfigError
from workbench.ship.alerts import (
    _METERS,
    COST_DRIFT,
    ENERGY_DRIFT,
    alert_rules,
    alert_rules_yaml,
    skipped_rules,
)
from workbench.ship.bundle import export

PROMTOOL = os.environ.get("PROMTOOL") or shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool absent (apt-get install prometheus, or set PROMTOOL)"
)
ENERGY, PRICE, PER_MILLION = 0.0031, 0.25, 0.42


def _manifest(**changes) -> Manifest:
    base = {
        "name": "digits-mlp",
        "models": (),
        "slo": Slo(p99_ms=20),
        "profile": {"energy_j_per_item": ENERGY, "energy_method": "measured", "run_id": 12},
        "cost": Cost(PER_MILLION, 200.0, PRICE, 0.5, "typed in"),
    }
    return Manifest(**{**base, **changes})


def _rules(m: Manifest, **drifts) -> dict[str, dict]:
    return {r["alert"]: r for r in alert_rules(m, **drifts)["groups"][0]["rules"]}


def _check_structure(doc: dict) -> None:
    """What Prometheus requires of a rule file, and what these rules promise besides."""
    assert set(doc) == {"groups"}
    for group in doc["groups"]:
        assert set(group) == {"name", "rules"} and group["name"]
        for rule in group["rules"]:
            assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
            assert re.fullmatch(r"\d+[smh]", rule["for"])
            assert rule["labels"]["severity"] in ("page", "ticket")
            assert rule["annotations"]["summary"]
            _check_balanced(rule["expr"])
            for annotation in rule["annotations"].values():
                assert annotation.count("{{") == annotation.count("}}")


def _check_balanced(expr: str) -> None:
    stack, pairs, quoted = [], {")": "(", "]": "[", "}": "{"}, False
    for ch in expr:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "([{":
            stack.append(ch)
        elif not quoted and ch in ")]}":
            assert stack and stack.pop() == pairs[ch], expr
    assert not stack and not quoted, expr


def test_live_rules_compare_the_live_figures_with_the_manifests_times_the_drift():
    rules = _rules(_manifest())
    energy = rules["DigitsMlpLiveEnergyPerPredictionDrift"]
    assert energy["expr"] == (
        "sum by (job, instance) (rate(serving_live_energy_joules_total[10m])) / "
        '(sum by (job, instance) (rate(serving_predictions_total{model="digits-mlp"}[10m])) > 0)'
        f" > {ENERGY * (1 + ENERGY_DRIFT):.6g}"
    )
    assert energy["expr"].endswith("> 0.00372") and energy["for"] == "15m"
    assert "(measured, run 12)" in energy["annotations"]["description"]
    assert "estimated from its process CPU time" in energy["annotations"]["description"]
    cost = rules["DigitsMlpLiveCostPer1MDrift"]
    # 0.25 USD/h / (3600 s x predictions/s) x 1e6 over 0.42 USD x 1.2
    assert cost["expr"] == (
        '0.25 / (3600 * (sum by (job, instance) (rate(serving_predictions_total{model="digits-mlp"}'
        f"[10m])) > 0)) * 1e6 > {PER_MILLION * (1 + COST_DRIFT):.6g}"
    )
    assert cost["expr"].endswith("> 0.504") and cost["for"] == "15m"
    assert "50% utilisation" in cost["annotations"]["description"]
    # the rules that were there stay
    assert {"DigitsMlpP99OverSLO", "DigitsMlpReplicaCostOverBudget", "DigitsMlpOverloaded"} < set(
        rules
    )
    wider = _rules(_manifest(), energy_drift=0.5, cost_drift=1.0)
    assert wider["DigitsMlpLiveEnergyPerPredictionDrift"]["expr"].endswith("> 0.00465")
    assert wider["DigitsMlpLiveCostPer1MDrift"]["expr"].endswith("> 0.84")
    with pytest.raises(ConfigError, match=r"energy_drift=-0\.1 must be a share > 0"):
        alert_rules(_manifest(), energy_drift=-0.1)


def test_the_rules_read_series_the_runtime_exports():
    metrics = ServingMetrics()
    metrics.enable_live()  # what a server with its live meter on (the default) exports
    exported = {metric.name for metric in metrics.all()}
    for rule in _rules(_manifest()).values():
        text = rule["expr"] + rule["annotations"].get("description", "")
        for name in re.findall(r"\b(serving_[a-z0-9_]+?)(?:_bucket)?\b[{\[]", text):
            assert name in exported, f"{rule['alert']} reads {name}, which serving/ never writes"


def test_a_rule_without_its_figure_is_left_out_and_the_file_says_why():
    bare = _manifest(profile={"throughput_items_per_s": 900.0}, cost=Cost())
    text = alert_rules_yaml(bare)
    doc = yaml.safe_load(text)
    _check_structure(doc)
    names = [r["alert"] for r in doc["groups"][0]["rules"]]
    assert names == ["DigitsMlpP99OverSLO", "DigitsMlpOverloaded"]
    comments = [line for line in text.splitlines() if line.startswith("# skipped ")]
    assert comments == [
        "# skipped DigitsMlpLiveEnergyPerPredictionDrift: the manifest has no "
        "profile.energy_j_per_item (export with a profile that measured or estimated energy)",
        "# skipped DigitsMlpLiveCostPer1MDrift: the manifest has no cost.instance_usd_per_h or "
        "cost.usd_per_million (export with instance_usd_per_h and a profile's throughput)",
    ]
    priced_only = _manifest(profile={}, cost=Cost(instance_usd_per_h=0.1))
    assert [r.split(":")[0] for r in skipped_rules(priced_only)] == [
        "DigitsMlpLiveEnergyPerPredictionDrift",
        "DigitsMlpLiveCostPer1MDrift",
    ]
    assert "no cost.usd_per_million (" in skipped_rules(priced_only)[1]
    cascade = _manifest(profile={}, cascade=Cascade("small", "large", 0.8))
    assert "a cascade has per-model energy figures only" in skipped_rules(cascade)[0]
    assert "is not a number > 0" in skipped_rules(_manifest(profile={"energy_j_per_item": 0}))[0]
    assert skipped_rules(_manifest()) == []
    assert "# skipped" not in alert_rules_yaml(_manifest())


def _onnx_model(path: Path) -> Path:
    weights = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["output"])],
        "m",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("alerts")
    figures = {"throughput_items_per_s": 2000.0, "energy_j_per_item": 0.0005}
    export(_onnx_model(tmp / "m.onnx"), tmp / "b", instance_usd_per_h=0.2, profile=figures)
    return tmp / "b"


def test_the_exported_rule_file_holds_the_live_rules_with_the_manifests_numbers(exported):
    doc = json.loads((exported / "manifest.json").read_text())
    text = (exported / "deploy/prometheus/alerts.yaml").read_text()
    rules = {r["alert"]: r for r in yaml.safe_load(text)["groups"][0]["rules"]}
    _check_structure(yaml.safe_load(text))
    # 0.2 USD/h at 2000 predictions/s and 50 % utilisation: 0.0555556 USD per 1M
    per_million = doc["cost"]["usd_per_million"]
    assert per_million == pytest.approx(0.2 / (2000 * 3600 * 0.5) * 1e6)
    energy = doc["profile"]["energy_j_per_item"]
    assert rules["MLiveEnergyPerPredictionDrift"]["expr"].endswith(f"> {energy * 1.2:.6g}")
    assert rules["MLiveCostPer1MDrift"]["expr"].startswith("0.2 / (3600 * ")
    assert rules["MLiveCostPer1MDrift"]["expr"].endswith(f"> {per_million * 1.2:.6g}")
    assert "(estimated)" in rules["MLiveEnergyPerPredictionDrift"]["annotations"]["description"]


@needs_promtool
def test_promtool_accepts_the_exported_rule_file(exported):
    rules = exported / "deploy/prometheus/alerts.yaml"
    done = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 3 rules found" in done.stdout


def _series(name: str, instance: str, per_minute: float, **labels: str) -> dict[str, str]:
    labels = {"job": "serving", "instance": instance, **labels}
    text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{text}}}", "values": f"0+{per_minute:g}x60"}


def _expected(rule: dict, instance: str, value: str, meters: str) -> dict:
    labels = {"severity": "ticket", "figure": rule["labels"]["figure"]}
    notes = {
        k: v.replace("{{ $labels.instance }}", instance)
        .replace('{{ $value | printf "%.4g" }}', value)
        .replace(_METERS, meters)
        for k, v in rule["annotations"].items()
    }
    return {
        "exp_labels": {**labels, "job": "serving", "instance": instance},
        "exp_annotations": notes,
    }


@needs_promtool
def test_promtool_fires_the_live_alerts_on_counters_that_drift(tmp_path):
    """Three servers, 1-minute samples; the profile says 0.0031 J and 0.42 USD per 1M (x 1.2:
    0.00372 J, 0.504 USD). a: 100 predictions/s at 0.0038 J each (fires energy; 0.25 / (3600 x
    100) x 1e6 = 0.694 USD fires cost too); b: 200/s at 0.0036 J (neither: 0.347 USD); c: idle,
    spending energy on no predictions (no J/prediction, so nothing fires)."""
    m = _manifest()
    rules = _rules(m)
    (tmp_path / "alerts.yaml").write_text(alert_rules_yaml(m))
    predictions, energy = "serving_predictions_total", "serving_live_energy_joules_total"
    meter = {"component": "cpu_package:0", "method": "measured", "meter": "rapl"}
    series = [
        _series(predictions, "a", 6000, model="digits-mlp"),
        _series(energy, "a", 6000 * 0.0038, **meter),
        {
            "series": 'serving_live_meter_info{job="serving",instance="a",'
            'component="cpu_package:0",method="measured",meter="rapl"}',
            "values": "1x60",
        },
        _series(predictions, "b", 12000, model="digits-mlp"),
        _series(
            energy, "b", 12000 * 0.0036, component="cpu", method="estimated", meter="process-cpu"
        ),
        _series(predictions, "c", 0, model="digits-mlp"),
        _series(energy, "c", 30, **meter),
    ]
    e, c = "DigitsMlpLiveEnergyPerPredictionDrift", "DigitsMlpLiveCostPer1MDrift"
    checks = [
        {"eval_time": "10m", "alertname": e, "exp_alerts": []},  # over the limit, not 15m yet
        {"eval_time": "10m", "alertname": c, "exp_alerts": []},
        {
            "eval_time": "40m",
            "alertname": e,
            "exp_alerts": [_expected(rules[e], "a", "0.0038", "cpu_package:0: rapl (measured); ")],
        },
        {
            "eval_time": "40m",
            "alertname": c,
            "exp_alerts": [_expected(rules[c], "a", "0.6944", "")],
        },
    ]
    unit = {
        "rule_files": ["alerts.yaml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": checks}],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(unit, sort_keys=False, width=1000))
    done = subprocess.run(
        [PROMTOOL, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
