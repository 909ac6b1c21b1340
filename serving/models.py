"""ONNX Runtime sessions for a bundle's models: threads and instances from the manifest, warm-up.

One :class:`OnnxModel` holds ``instances`` sessions (one per worker thread, each with its own
intra-op thread pool). :meth:`OnnxModel.warm_up` runs every session at 1 row and at the largest
batch before the model reports ready, and measures the two call times the batcher uses to decide
whether waiting for more rows can pay off.

Example
-------
>>> model = OnnxModel("models/digits-cnn.onnx", name="digits-cnn")   # doctest: +SKIP
>>> model.warm_up(max_rows=32).batching_pays                            # doctest: +SKIP
True
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from serving.protocol import NUMPY_DTYPES

#: ONNX Runtime type strings -> V2 datatypes.
ORT_DATATYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
}
#: Size given to variable non-batch dimensions of warm-up inputs with no typical shape.
WARMUP_DIM = 8
#: Batching pays when a batch of B rows costs less than this share of B single-row calls.
BATCHING_PAYS_BELOW = 0.8


class ModelError(Exception):
    """A model file ONNX Runtime cannot load, or a type the runtime does not serve."""


@dataclass(frozen=True)
class Warmup:
    """Measured during warm-up (median of a few calls, seconds): one row, and ``max_rows``."""

    seconds_1: float
    seconds_max: float
    max_rows: int

    @property
    def batching_pays(self) -> bool:
        """True when one call of ``max_rows`` rows is clearly cheaper than that many 1-row calls."""
        return self.seconds_max < BATCHING_PAYS_BELOW * self.seconds_1 * self.max_rows


class OnnxModel:
    """``instances`` ONNX Runtime CPU sessions of one model file."""

    def __init__(
        self,
        path: str | Path,
        name: str,
        *,
        threads: int = 1,
        inter_op: int = 1,
        instances: int = 1,
        spinning: bool = False,
        typical_shapes: dict[str, tuple[int, ...]] | None = None,
    ) -> None:
        self.name = name
        self.typical_shapes = typical_shapes or {}
        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = inter_op
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # A spinning worker thread burns a core while waiting: bad on small shared machines.
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if spinning else "0"
        )
        options.add_session_config_entry(
            "session.inter_op.allow_spinning", "1" if spinning else "0"
        )
        try:
            self.sessions = [
                ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
                for _ in range(instances)
            ]
        except Exception as exc:  # ORT raises its own exception types
            raise ModelError(f"ONNX Runtime cannot load {self.path}: {exc}") from exc
        first = self.sessions[0]
        self.inputs = {
            i.name: (_datatype(i, self.path), _shape(i.shape)) for i in first.get_inputs()
        }
        self.outputs = {
            o.name: (_datatype(o, self.path), _shape(o.shape)) for o in first.get_outputs()
        }
        self.output_names = list(self.outputs)
        self.warmup: Warmup | None = None

    @property
    def batch_axis(self) -> bool:
        """True when every input and output has a variable dimension 0 (a batch axis)."""
        shapes = [s for _, s in (*self.inputs.values(), *self.outputs.values())]
        return all(len(s) > 0 and s[0] == -1 for s in shapes)

    def run(self, feed: dict[str, np.ndarray], instance: int = 0) -> dict[str, np.ndarray]:
        """One forward pass on session ``instance``; outputs by name."""
        results = self.sessions[instance].run(self.output_names, feed)
        return dict(zip(self.output_names, results, strict=True))

    def example(self, rows: int) -> dict[str, np.ndarray]:
        """Zeros of the right types, ``rows`` rows; variable dimensions from the typical shapes
        (or a small size when none is known)."""
        feed = {}
        for name, (datatype, shape) in self.inputs.items():
            typical = self.typical_shapes.get(name)
            dims = []
            for axis, d in enumerate(shape):
                if axis == 0 and d == -1:
                    dims.append(rows)
                elif d == -1:
                    dims.append(
                        typical[axis] if typical and len(typical) == len(shape) else WARMUP_DIM
                    )
                else:
                    dims.append(d)
            feed[name] = np.zeros(dims, dtype=NUMPY_DTYPES[datatype])
        return feed

    def warm_up(self, max_rows: int, calls: int = 5) -> Warmup:
        """Run every session at 1 and ``max_rows`` rows; keep the median times."""
        big = max_rows if self.batch_axis else 1
        timings = {}
        for rows in sorted({1, big}):
            feed = self.example(rows)
            samples = []
            for instance in range(len(self.sessions)):
                for _ in range(calls):
                    start = time.perf_counter()
                    self.run(feed, instance)
                    samples.append(time.perf_counter() - start)
            timings[rows] = float(np.median(samples))
        self.warmup = Warmup(timings[1], timings[big], big)
        return self.warmup


def _datatype(arg: ort.NodeArg, path: Path) -> str:
    if arg.type not in ORT_DATATYPES:
        raise ModelError(f"{path}: tensor {arg.name!r} has type {arg.type}, which V2 cannot carry")
    return ORT_DATATYPES[arg.type]


def _shape(shape: list) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)
