"""Cascades: a small model answers first; items it is unsure of escalate to a large model.

An item escalates when its **confidence** under the small model is below a threshold. Confidence
is the maximum softmax probability (``"max_softmax"``), the gap between the two largest
probabilities (``"margin"``), or any callable mapping the small model's probability rows to one
score per item. The two named methods are the runtime's (the bundle manifest's
``cascade.confidence``), so a threshold picked here means the same when served. Every item
runs the small model; escalated items also run the large one, so per item::

    usd_per_million = small_usd_per_million + escalation_rate * large_usd_per_million
    energy_j_per_item = small_energy_j_per_item + escalation_rate * large_energy_j_per_item

(the same arithmetic as :func:`workbench.cost.model.cascade_effective`). :func:`cascade_sweep`
scores every threshold on held-out data (a cascade answer is the large model's for escalated items
and the small model's otherwise); :func:`pick_threshold` returns the cheapest threshold meeting an
accuracy target. Probabilities come from :func:`model_probabilities` (the only function here that
runs a model).

Example
-------
>>> small = np.array([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45]])
>>> large = np.array([[0.8, 0.2], [0.1, 0.9], [0.3, 0.7]])
>>> sweep = cascade_sweep(small, large, np.array([0, 1, 1]),
...                       small_usd_per_million=1.0, large_usd_per_million=10.0)
>>> sweep.to_frame()[["threshold", "accuracy", "escalation_rate", "usd_per_million"]].round(3)
   threshold  accuracy  escalation_rate  usd_per_million
0       0.55     0.333            0.000            1.000
1       0.60     0.667            0.333            4.333
2       0.90     1.000            0.667            7.667
3       0.90     1.000            1.000           11.000
>>> choice = pick_threshold(sweep, min_accuracy=0.99)
>>> choice.threshold, round(choice.escalation_rate, 3), round(choice.saved_vs_large_pct, 1)
(0.9, 0.667, 23.3)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from workbench.checks import fraction, number
from workbench.errors import ConfigError

Confidence = str | Callable[[np.ndarray], np.ndarray]


def usd_per_million_items(usd_per_h: float, throughput_items_per_s: float) -> float:
    """Serving cost of one million items on a machine at ``usd_per_h`` kept busy at
    ``throughput_items_per_s``.

    >>> round(usd_per_million_items(0.17, 1000.0), 4)
    0.0472
    """
    number("usd_per_h", usd_per_h, minimum=0, open_low=True)
    number("throughput_items_per_s", throughput_items_per_s, minimum=0, open_low=True)
    return usd_per_h / 3600.0 / throughput_items_per_s * 1e6


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def confidence(probs: np.ndarray, method: Confidence = "max_softmax") -> np.ndarray:
    """One confidence score per row of ``probs`` (see the module docstring)."""
    p = _probs("probs", probs)
    if callable(method):
        scores = np.asarray(method(p), dtype=np.float64).reshape(-1)
        if len(scores) != len(p) or not np.all(np.isfinite(scores)):
            raise ConfigError(
                f"the confidence callable returned {len(scores)} scores for {len(p)} items "
                "(or non-finite ones); return one finite score per row"
            )
        return scores
    if method == "max_softmax":
        return p.max(axis=1)
    if method == "margin":
        if p.shape[1] < 2:
            raise ConfigError("margin confidence needs at least two classes")
        top = np.sort(p, axis=1)
        return top[:, -1] - top[:, -2]
    raise ConfigError(f"confidence={method!r} must be 'max_softmax', 'margin' or a callable")


def _probs(name: str, probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ConfigError(f"{name} must be a 2-d array (items x classes), got shape {p.shape}")
    return p


@dataclass
class CascadeSweep:
    """Accuracy, escalation rate and cost per threshold; the two models alone for reference.

    ``frame`` columns: ``threshold`` (escalate when confidence < threshold), ``accuracy``,
    ``escalation_rate``, ``usd_per_million``, ``energy_j_per_item`` (if energies were given).
    The first row escalates nothing (the small model alone), the last everything.
    """

    frame: pd.DataFrame
    small_accuracy: float
    large_accuracy: float
    small_usd_per_million: float
    large_usd_per_million: float
    confidence_method: str
    items: int

    def to_frame(self) -> pd.DataFrame:
        return self.frame.copy()


@dataclass(frozen=True)
class CascadeChoice:
    """The threshold picked for a quality target and what it gives."""

    threshold: float
    accuracy: float
    escalation_rate: float
    usd_per_million: float
    energy_j_per_item: float | None
    saved_vs_large_pct: float
    min_accuracy: float


def cascade_sweep(
    small_probs: np.ndarray,
    large_probs: np.ndarray,
    y_true: np.ndarray,
    *,
    small_usd_per_million: float,
    large_usd_per_million: float,
    confidence_method: Confidence = "max_softmax",
    thresholds: Sequence[float] | None = None,
    small_energy_j_per_item: float | None = None,
    large_energy_j_per_item: float | None = None,
) -> CascadeSweep:
    """Score each threshold on held-out data (``y_true``: class index per item).

    ``thresholds`` default to every distinct confidence value (each escalates a different set)
    plus one above the largest (escalate all).
    """
    small, large = _probs("small_probs", small_probs), _probs("large_probs", large_probs)
    y = np.asarray(y_true).reshape(-1)
    if not (len(small) == len(large) == len(y)):
        raise ConfigError(
            f"small_probs, large_probs and y_true have {len(small)}, {len(large)} and {len(y)} "
            "rows; give all three for the same held-out items"
        )
    for name, value in (
        ("small_usd_per_million", small_usd_per_million),
        ("large_usd_per_million", large_usd_per_million),
    ):
        number(name, value, minimum=0, fix="see usd_per_million_items")
    conf = confidence(small, confidence_method)
    if thresholds is None:
        levels = np.unique(conf)
        grid = np.append(levels, np.nextafter(levels[-1], np.inf))
    else:
        grid = np.sort(np.asarray(thresholds, dtype=np.float64).reshape(-1))
        if len(grid) == 0 or not np.all(np.isfinite(grid)):
            raise ConfigError("thresholds must be a non-empty list of finite numbers")
    small_ok = small.argmax(axis=1) == y
    large_ok = large.argmax(axis=1) == y
    order = np.argsort(conf, kind="stable")
    sorted_conf = conf[order]
    # cum[k]: correct answers among the k least confident items
    cum_small = np.concatenate([[0], np.cumsum(small_ok[order])])
    cum_large = np.concatenate([[0], np.cumsum(large_ok[order])])
    escalated = np.searchsorted(sorted_conf, grid, side="left")
    n = len(y)
    correct = cum_large[escalated] + (cum_small[-1] - cum_small[escalated])
    rate = escalated / n
    frame = pd.DataFrame(
        {
            "threshold": grid,
            "accuracy": correct / n,
            "escalation_rate": rate,
            "usd_per_million": small_usd_per_million + rate * large_usd_per_million,
        }
    )
    if small_energy_j_per_item is not None and large_energy_j_per_item is not None:
        frame["energy_j_per_item"] = small_energy_j_per_item + rate * large_energy_j_per_item
    name = confidence_method if isinstance(confidence_method, str) else "callable"
    return CascadeSweep(
        frame=frame,
        small_accuracy=float(small_ok.mean()),
        large_accuracy=float(large_ok.mean()),
        small_usd_per_million=float(small_usd_per_million),
        large_usd_per_million=float(large_usd_per_million),
        confidence_method=name,
        items=n,
    )


def pick_threshold(sweep: CascadeSweep, min_accuracy: float) -> CascadeChoice:
    """The cheapest threshold (fewest escalations) whose accuracy reaches ``min_accuracy``;
    among equally cheap ones, the most accurate."""
    fraction("min_accuracy", min_accuracy)
    ok = sweep.frame[sweep.frame["accuracy"] >= min_accuracy]
    if ok.empty:
        best = sweep.frame["accuracy"].max()
        raise ConfigError(
            f"no threshold reaches accuracy {min_accuracy:g} on these {sweep.items} items (best "
            f"{best:.4g}; the large model alone {sweep.large_accuracy:.4g}); lower the target or "
            "use a stronger large model"
        )
    row = ok.sort_values(["usd_per_million", "accuracy"], ascending=[True, False]).iloc[0]
    large_only = sweep.large_usd_per_million
    saved = 100.0 * (1 - float(row["usd_per_million"]) / large_only) if large_only > 0 else 0.0
    return CascadeChoice(
        threshold=float(row["threshold"]),
        accuracy=float(row["accuracy"]),
        escalation_rate=float(row["escalation_rate"]),
        usd_per_million=float(row["usd_per_million"]),
        energy_j_per_item=float(row["energy_j_per_item"]) if "energy_j_per_item" in row else None,
        saved_vs_large_pct=saved,
        min_accuracy=float(min_accuracy),
    )


def model_probabilities(handle: Any, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (softmax of the outputs) of a classifier for ``inputs``.

    Uses the handle's torch module if it has one, else ONNX Runtime on its ONNX file; the model's
    first output must be logits (items x classes).
    """
    x = np.asarray(inputs)
    chunks = []
    if getattr(handle, "torch_module", None) is not None:
        import torch

        with torch.inference_mode():
            for i in range(0, len(x), batch_size):
                chunks.append(handle.torch_module(torch.from_numpy(x[i : i + batch_size])).numpy())
    else:
        import onnxruntime as ort

        session = ort.InferenceSession(str(handle.onnx()), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for i in range(0, len(x), batch_size):
            chunks.append(session.run(None, {name: x[i : i + batch_size]})[0])
    return softmax(np.concatenate(chunks))
