"""Cascade routing: the small model answers first; rows it is unsure of go to the large model.

Confidence per row comes from the small model's score output: ``max_softmax`` (the largest class
probability) or ``margin`` (largest minus second largest probability). Rows below ``threshold``
are escalated: only those rows are sent to the large model, whose answers replace the small
model's. The large model gets the same inputs, matched by position and reshaped to its own row
shape when the number of values per row agrees (e.g. ``[n, 64]`` for ``[n, 1, 8, 8]``).

Example
-------
>>> import numpy as np
>>> confidence(np.array([[4.0, 0.0], [0.1, 0.0]]), "max_softmax").round(2).tolist()
[0.98, 0.52]
"""

from __future__ import annotations

import numpy as np

from serving.batcher import Batcher
from serving.manifest import Cascade


def softmax(scores: np.ndarray) -> np.ndarray:
    z = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def confidence(scores: np.ndarray, method: str, kind: str = "logits") -> np.ndarray:
    """Per-row confidence in [0, 1] from class scores (rows first; other axes flattened)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)
    probs = softmax(scores) if kind == "logits" else scores
    if method == "max_softmax":
        return probs.max(axis=1)
    if probs.shape[1] < 2:
        return np.ones(len(probs))
    top2 = np.partition(probs, -2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


class CascadeRouter:
    """Small model first, escalate unsure rows to the large one."""

    def __init__(self, small: Batcher, large: Batcher, config: Cascade) -> None:
        self.small, self.large, self.config = small, large, config
        small_in, large_in = small.model.inputs, large.model.inputs
        small_out, large_out = small.model.outputs, large.model.outputs
        if len(small_in) != len(large_in) or len(small_out) != len(large_out):
            raise ValueError(
                f"cascade models differ in inputs/outputs: small {list(small_in)} -> "
                f"{list(small_out)}, large {list(large_in)} -> {list(large_out)}"
            )
        self.input_map = dict(zip(small_in, large_in, strict=True))
        self.output_map = dict(zip(small_out, large_out, strict=True))
        self.large_row_shapes = {name: shape[1:] for name, (_, shape) in large_in.items()}
        self.score_output = config.output or next(iter(small_out))
        if self.score_output not in small_out:
            raise ValueError(
                f"cascade output {self.score_output!r} is not an output of the small model"
            )

    async def infer(
        self, inputs: dict[str, np.ndarray], rows: int
    ) -> tuple[dict[str, np.ndarray], int, float]:
        """Outputs for every row, the number of escalated rows, and the small model's queue time."""
        outputs, queue_s = await self.small.submit(inputs, rows)
        conf = confidence(outputs[self.score_output], self.config.confidence, self.config.scores)
        unsure = np.flatnonzero(conf < self.config.threshold)
        if unsure.size == 0:
            return outputs, 0, queue_s
        feed = {
            self.input_map[k]: self._reshape(self.input_map[k], v[unsure])
            for k, v in inputs.items()
        }
        large, _ = await self.large.submit(feed, int(unsure.size), arrived=False)
        merged = {}
        for name, array in outputs.items():
            array = np.array(array)  # a copy: the small model's batch output is shared
            array[unsure] = large[self.output_map[name]].reshape(array[unsure].shape)
            merged[name] = array
        return merged, int(unsure.size), queue_s

    def _reshape(self, name: str, rows: np.ndarray) -> np.ndarray:
        row_shape = self.large_row_shapes[name]
        if rows.shape[1:] == row_shape or any(d < 0 for d in row_shape):
            return np.ascontiguousarray(rows)
        return np.ascontiguousarray(rows).reshape((len(rows), *row_shape))
