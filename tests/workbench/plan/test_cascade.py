"""Cascades on held-out digits with the two demo models (small digits-mlp, large digits-cnn)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import ConfigError
from workbench.measure.profiling import profile
from workbench.models import load_model
from workbench.models.datasets import digits_split
from workbench.models.zoo import digits_inputs
from workbench.plan.cascade import (
    cascade_sweep,
    confidence,
    model_probabilities,
    pick_threshold,
    softmax,
    usd_per_million_items,
)

USD_PER_H = 0.17  # one 4-vCPU machine, both models on it


@pytest.fixture(scope="module")
def digits():
    split = digits_split(0)
    small, large = load_model("digits-mlp"), load_model("digits-cnn")
    probs = {
        name: model_probabilities(handle, digits_inputs(name, split.X_test))
        for name, handle in (("digits-mlp", small), ("digits-cnn", large))
    }
    # Per-item cost from each model's measured throughput at batch 32.
    cost = {
        name: usd_per_million_items(
            USD_PER_H,
            profile(
                handle,
                backend="torch",
                batch_size=32,
                threads=1,
                max_seconds=0.3,
                operators=False,
                store=False,
            ).throughput_items_per_s,
        )
        for name, handle in (("digits-mlp", small), ("digits-cnn", large))
    }
    return split, small, large, probs, cost


@pytest.fixture(scope="module")
def digits_sweep(digits):
    """The default threshold sweep with measured per-item costs."""
    split, _, _, probs, cost = digits
    return cascade_sweep(
        probs["digits-mlp"],
        probs["digits-cnn"],
        split.y_test,
        small_usd_per_million=cost["digits-mlp"],
        large_usd_per_million=cost["digits-cnn"],
    )


@pytest.mark.slow  # trains both demo models on a fresh cache (5-50 s)
def test_sweep_spans_small_alone_to_large_alone(digits, digits_sweep):
    _, small, large, _, cost = digits
    sweep = digits_sweep
    frame = sweep.to_frame()
    first, last = frame.iloc[0], frame.iloc[-1]
    # the models' own held-out accuracy, computed when they were trained
    assert first["escalation_rate"] == 0
    assert first["accuracy"] == pytest.approx(small.metadata["accuracy_test"])
    assert last["escalation_rate"] == 1
    assert last["accuracy"] == pytest.approx(large.metadata["accuracy_test"])
    assert sweep.small_accuracy == pytest.approx(small.metadata["accuracy_test"])
    assert (np.diff(frame["escalation_rate"]) >= 0).all()
    assert (np.diff(frame["usd_per_million"]) >= 0).all()
    expected = cost["digits-mlp"] + frame["escalation_rate"] * cost["digits-cnn"]
    assert np.allclose(frame["usd_per_million"], expected)
    # the CNN costs more per item than the MLP on this machine (measured)
    assert cost["digits-cnn"] > cost["digits-mlp"]


@pytest.mark.slow  # trains both demo models on a fresh cache (5-50 s)
def test_one_threshold_by_brute_force(digits):
    split, _, _, probs, _ = digits
    small, large, y = probs["digits-mlp"], probs["digits-cnn"], split.y_test
    conf = small.max(axis=1)
    threshold = float(np.quantile(conf, 0.2))
    escalate = conf < threshold
    answer = np.where(escalate, large.argmax(1), small.argmax(1))
    sweep = cascade_sweep(
        small, large, y, small_usd_per_million=1.0, large_usd_per_million=10.0,
        thresholds=[threshold],
    )  # fmt: skip
    row = sweep.to_frame().iloc[0]
    assert row["accuracy"] == pytest.approx((answer == y).mean())
    assert row["escalation_rate"] == pytest.approx(escalate.mean())
    assert row["usd_per_million"] == pytest.approx(1.0 + 10.0 * escalate.mean())


@pytest.mark.slow  # trains both demo models on a fresh cache (5-50 s)
def test_pick_threshold_for_a_quality_target(digits, digits_sweep):
    _, _, large, _, cost = digits
    sweep = digits_sweep
    frame = sweep.to_frame()
    target = large.metadata["accuracy_test"]
    choice = pick_threshold(sweep, min_accuracy=target)
    assert choice.accuracy >= target
    meeting = frame[frame["accuracy"] >= target]
    assert choice.usd_per_million == pytest.approx(meeting["usd_per_million"].min())
    assert choice.escalation_rate < 1  # unsure digits escalate; the sure ones never need the CNN
    assert choice.saved_vs_large_pct == pytest.approx(
        100 * (1 - choice.usd_per_million / cost["digits-cnn"])
    )
    easy = pick_threshold(sweep, min_accuracy=sweep.small_accuracy)
    assert easy.escalation_rate == 0


@pytest.mark.slow  # trains both demo models on a fresh cache (5-50 s)
def test_confidence_measures(digits):
    split, _, _, probs, _ = digits
    p = probs["digits-mlp"]
    top2 = np.sort(p, axis=1)[:, -2:]
    assert np.allclose(confidence(p, "margin"), top2[:, 1] - top2[:, 0])
    entropy = lambda q: 1 + (q * np.log(q + 1e-12)).sum(axis=1) / np.log(q.shape[1])  # noqa: E731
    sweep = cascade_sweep(
        p, probs["digits-cnn"], split.y_test, small_usd_per_million=1.0,
        large_usd_per_million=5.0, confidence_method=entropy,
    )  # fmt: skip
    assert sweep.confidence_method == "callable"
    assert sweep.to_frame()["escalation_rate"].iloc[-1] == 1
    assert np.allclose(softmax(np.log(p)), p)


def test_bad_cascade_input():
    p = np.array([[0.7, 0.3], [0.4, 0.6]])
    y = np.array([0, 1])
    with pytest.raises(ConfigError, match="have 2, 2 and 3 rows"):
        cascade_sweep(p, p, np.array([0, 1, 1]), small_usd_per_million=1, large_usd_per_million=2)
    with pytest.raises(ConfigError, match="confidence='entropy'"):
        cascade_sweep(
            p, p, y, small_usd_per_million=1, large_usd_per_million=2, confidence_method="entropy"
        )
    with pytest.raises(ConfigError, match="returned 1 scores for 2 items"):
        confidence(p, lambda q: np.ones(1))
    with pytest.raises(ConfigError, match="small_usd_per_million"):
        cascade_sweep(p, p, y, small_usd_per_million=-1, large_usd_per_million=2)
    with pytest.raises(ConfigError, match="2-d array"):
        confidence(np.ones(3))
    with pytest.raises(ConfigError, match="throughput"):
        usd_per_million_items(0.1, 0)
    wrong = cascade_sweep(p, p, 1 - y, small_usd_per_million=1, large_usd_per_million=2)
    with pytest.raises(ConfigError, match=r"no threshold reaches accuracy 0\.5 .*best 0"):
        pick_threshold(wrong, min_accuracy=0.5)
    with pytest.raises(ConfigError, match="min_accuracy"):
        pick_threshold(wrong, min_accuracy=1.5)
