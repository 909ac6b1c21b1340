"""Held-out quality of a model variant against its fp32 reference, measured on real data.

A :class:`TaskData` names the data a model is judged on: a held-out set (quality), a calibration
set (static quantisation, sensitivity scans) and a training set (fine-tuning, distillation). Two
kinds of set exist: :class:`ArraySet` (fixed-shape arrays, with labels for classifiers) and
:class:`SentenceSet` (sentences tokenised per batch with length bucketing: sorted by length and
padded to the longest sentence of each batch, never to a fixed maximum).

Figures (:class:`Quality`): accuracy for classifiers (and top-1 agreement with the fp32 model);
for encoders the mean and minimum cosine similarity to the fp32 outputs and the share of held-out
items whose nearest neighbour stays the same (a mean cosine of 0.994 can hide ranking damage);
the largest absolute output error for every model; a user metric where one is given.
``drop`` is the reference figure minus the variant's (accuracy points as a fraction, or
``1 - mean cosine``), so lower is better and negative means the variant scored higher.

Example
-------
>>> import numpy as np
>>> ref = np.eye(3, dtype=np.float32)
>>> data = TaskData("classification", ArraySet({"input": ref}, labels=np.arange(3)))
>>> q = evaluate(ref, ref, data)
>>> q.metric, q.value, q.drop, q.max_abs_error
('accuracy', 1.0, 0.0, 0.0)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from workbench.errors import ConfigError, InputShapeError
from workbench.models.handle import ModelHandle

TASKS = ("classification", "embedding", "custom")
#: Demo models with built-in data splits.
DEMO_DATA = ("digits-cnn", "digits-mlp", "minilm")
#: Batch sizes used to run a held-out set through a variant (quality, not timing).
EVAL_BATCH_ARRAYS = 128
EVAL_BATCH_SENTENCES = 16


@dataclass
class ArraySet:
    """Fixed-shape examples: arrays keyed by input name (batch first) and optional labels."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    description: str = "arrays"

    def __post_init__(self) -> None:
        sizes = {k: len(v) for k, v in self.inputs.items()}
        if not sizes or len(set(sizes.values())) != 1 or 0 in sizes.values():
            raise InputShapeError(
                f"{self.description}: every input needs the same number of rows (> 0), got "
                f"{sizes}; pass arrays with the examples on dimension 0"
            )
        if self.labels is not None and len(self.labels) != len(self):
            raise InputShapeError(
                f"{self.description}: {len(self.labels)} labels for {len(self)} examples; "
                "pass one label per row"
            )

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """``(row indices, feed)`` in order."""
        for start in range(0, len(self), batch_size):
            idx = np.arange(start, min(start + batch_size, len(self)))
            yield idx, {k: v[idx] for k, v in self.inputs.items()}

    def example_feed(self, batch_size: int) -> dict[str, np.ndarray]:
        """``batch_size`` real rows (wrapping around), for timing."""
        idx = np.arange(batch_size) % len(self)
        return {k: np.ascontiguousarray(v[idx]) for k, v in self.inputs.items()}

    def head(self, n: int) -> ArraySet:
        n = min(n, len(self))
        labels = None if self.labels is None else self.labels[:n]
        return ArraySet({k: v[:n] for k, v in self.inputs.items()}, labels, self.description)


@dataclass
class SentenceSet:
    """Sentences for an encoder, tokenised per batch with length bucketing.

    ``max_length`` only truncates sentences longer than the model allows; nothing is padded to it.
    """

    sentences: list[str]
    tokenizer: Any = field(repr=False)
    max_length: int = 256
    description: str = "sentences"
    labels: None = None
    _lengths: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.sentences or not all(isinstance(s, str) and s for s in self.sentences):
            raise InputShapeError(
                f"{self.description}: pass a non-empty list of non-empty sentences (str)"
            )

    def __len__(self) -> int:
        return len(self.sentences)

    @property
    def lengths(self) -> np.ndarray:
        """Token count of each sentence (special tokens included, after truncation)."""
        if self._lengths is None:
            enc = self.tokenizer(self.sentences, truncation=True, max_length=self.max_length)
            self._lengths = np.array([len(ids) for ids in enc["input_ids"]])
        return self._lengths

    def encode(self, idx: Sequence[int], length: int | None = None) -> dict[str, np.ndarray]:
        """Token ids and mask of these sentences, padded to the longest (or to ``length``)."""
        padding: Any = "max_length" if length else True
        enc = self.tokenizer(
            [self.sentences[i] for i in idx],
            padding=padding,
            truncation=True,
            max_length=length or self.max_length,
            return_tensors="np",
        )
        return {
            "input_ids": enc["input_ids"].astype(np.int64),
            "attention_mask": enc["attention_mask"].astype(np.int64),
        }

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """Length-bucketed ``(indices, feed)``: sorted by length, padded within each batch."""
        for idx in bucket_batches(self.lengths, batch_size):
            yield idx, self.encode(idx)

    def fixed_length_batches(
        self, batch_size: int
    ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """Every batch padded to the longest sentence of the set: for calibrators that need
        one activation shape across batches (ONNX Runtime's Entropy and Percentile)."""
        length = int(self.lengths.max())
        for start in range(0, len(self), batch_size):
            idx = np.arange(start, min(start + batch_size, len(self)))
            yield idx, self.encode(idx, length=length)

    def example_feed(self, batch_size: int) -> dict[str, np.ndarray]:
        """A bucketed batch of ``batch_size`` real sentences around the median length: what a
        server that groups requests by length would run (for timing)."""
        order = np.argsort(self.lengths, kind="stable")
        start = max(0, min(len(order) // 2 - batch_size // 2, len(order) - batch_size))
        idx = np.resize(order[start : start + batch_size], batch_size)
        return self.encode(idx)

    def head(self, n: int) -> SentenceSet:
        return SentenceSet(self.sentences[:n], self.tokenizer, self.max_length, self.description)


DataSet = ArraySet | SentenceSet
#: A user metric: ``metric(outputs, labels) -> float``, higher is better.
Metric = Callable[[np.ndarray, Any], float]


@dataclass
class TaskData:
    """What a model is judged on: ``held_out`` for quality, ``calibration`` for quantisers and
    sensitivity scans, ``train`` for fine-tuning and distillation (defaults: calibration)."""

    task: str
    held_out: DataSet
    calibration: DataSet | None = None
    train: DataSet | None = None
    metric: Metric | None = None
    metric_name: str = "metric"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task={self.task!r} is not one of {', '.join(TASKS)}")
        if self.task == "classification" and self.held_out.labels is None:
            raise ConfigError(
                "classification quality needs held-out labels: pass labels= with the held-out "
                "inputs (or task='embedding' for an encoder)"
            )
        if self.task == "custom" and self.metric is None:
            raise ConfigError("task='custom' needs metric=callable(outputs, labels) -> float")
        if self.calibration is None:
            self.calibration = self.held_out if self.train is None else self.train
        if self.train is None:
            self.train = self.calibration


def task_data(
    handle: ModelHandle,
    *,
    held_out: DataSet | Mapping[str, np.ndarray] | np.ndarray | None = None,
    labels: np.ndarray | None = None,
    calibration: DataSet | Mapping[str, np.ndarray] | np.ndarray | None = None,
    train: DataSet | Mapping[str, np.ndarray] | np.ndarray | None = None,
    train_labels: np.ndarray | None = None,
    metric: Metric | None = None,
    task: str | None = None,
    seed: int = 0,
) -> TaskData:
    """The data of a demo model, or the user's (checked against the model's inputs).

    A user model must come with held-out data: quality is measured, never assumed. Arrays are
    matched to the model's inputs by name (a bare array goes to its only input).
    """
    if held_out is None and handle.name in DEMO_DATA:
        return demo_task_data(handle, seed=seed)
    if held_out is None:
        raise ConfigError(
            f"{handle.name} has no built-in held-out data: pass held_out= (arrays keyed by input "
            "name, or a SentenceSet) and labels= or metric= (CLI: --held-out data.npz with the "
            "inputs by name and 'labels'), so that quality is measured"
        )
    sets = {}
    for field_name, value, y in (
        ("held_out", held_out, labels),
        ("calibration", calibration, None),
        ("train", train, train_labels),
    ):
        if value is None:
            sets[field_name] = None
        elif isinstance(value, SentenceSet):
            sets[field_name] = value
        else:
            arrays = check_inputs(handle, value, field_name)
            sets[field_name] = ArraySet(arrays, y, f"{field_name} data")
    chosen = task or ("custom" if metric is not None else "classification")
    if sets["calibration"] is None and sets["train"] is None:
        warnings.warn(
            f"{handle.name}: no calibration= or train= data, so static quantisation, the "
            "sensitivity scan and fine-tuning use the held-out data too; pass calibration= to "
            "keep the quality figures independent of them",
            stacklevel=2,
        )
    return TaskData(chosen, sets["held_out"], sets["calibration"], sets["train"], metric)


def demo_task_data(handle: ModelHandle, seed: int = 0) -> TaskData:
    """Built-in splits: digits (train / validation for calibration / test held out) and the
    shipped sentences (calibration, which also serves to fine-tune, / held out)."""
    from workbench.models.datasets import digits_split, sentence_split
    from workbench.models.zoo import digits_inputs

    if handle.name == "minilm":
        split = sentence_split(seed)
        tok = handle.assets["tokenizer"]
        return TaskData(
            "embedding",
            SentenceSet(split.held_out, tok, description="held-out sentences"),
            calibration=SentenceSet(split.calibration, tok, description="calibration sentences"),
        )
    split = digits_split(seed)

    def arrays(X: np.ndarray, y: np.ndarray, what: str) -> ArraySet:
        return ArraySet({"input": digits_inputs(handle.name, X)}, y, what)

    return TaskData(
        "classification",
        arrays(split.X_test, split.y_test, "digits test images (held out)"),
        calibration=arrays(split.X_val, split.y_val, "digits validation images"),
        train=arrays(split.X_train, split.y_train, "digits training images"),
    )


def check_inputs(
    handle: ModelHandle, value: Mapping[str, np.ndarray] | np.ndarray, field_name: str
) -> dict[str, np.ndarray]:
    """User arrays keyed by input name, checked for names, rank, fixed sizes and dtype kind."""
    specs = {s.name: s for s in handle.inputs}
    if not isinstance(value, Mapping):
        if len(specs) != 1:
            raise InputShapeError(
                f"{field_name}: {handle.name} has inputs {sorted(specs)}; pass a dict keyed by "
                "input name"
            )
        value = {next(iter(specs)): value}
    arrays = {k: np.asarray(v) for k, v in value.items()}
    missing, extra = set(specs) - set(arrays), set(arrays) - set(specs)
    if missing or extra:
        raise InputShapeError(
            f"{field_name}: {handle.name} takes inputs {sorted(specs)}, got {sorted(arrays)}; "
            "key the arrays by the model's input names"
        )
    for name, arr in arrays.items():
        spec = specs[name]
        fits = arr.ndim == len(spec.shape) and all(
            d is None or d == a for d, a in zip(spec.shape[1:], arr.shape[1:], strict=True)
        )
        if not fits:
            want = "[" + ", ".join("N" if d is None else str(d) for d in spec.shape) + "]"
            raise InputShapeError(
                f"{field_name}: input {name!r} has shape {list(arr.shape)}, but {handle.name} "
                f"takes {want} (N = any size, rows first); reshape the data to fit"
            )
        if spec.dtype.startswith("float") != (arr.dtype.kind == "f"):
            raise InputShapeError(
                f"{field_name}: input {name!r} is {arr.dtype}, but {handle.name} takes "
                f"{spec.dtype}; convert it with .astype('{spec.dtype}')"
            )
        arrays[name] = arr.astype(spec.dtype, copy=False)
    return arrays


def bucket_batches(lengths: Sequence[int] | np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar length (sorted by length, stable).

    >>> [b.tolist() for b in bucket_batches([5, 2, 9, 3], 2)]
    [[1, 3], [0, 2]]
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be >= 1")
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def predict(
    run: Callable[[dict[str, np.ndarray]], Any], data: DataSet, batch_size: int | None = None
):
    """First output of ``run(feed)`` for every item of ``data``, rows in the data's order.

    ``run`` takes a feed (input name -> array) and returns an array or a list whose first item
    is the output, e.g. a :class:`workbench.measure.backends.Runner`.
    """
    if batch_size is None:
        batch_size = EVAL_BATCH_SENTENCES if isinstance(data, SentenceSet) else EVAL_BATCH_ARRAYS
    out: np.ndarray | None = None
    for idx, feed in data.batches(batch_size):
        got = run(feed)
        first = got[0] if isinstance(got, (list, tuple)) else got
        first = np.asarray(first, dtype=np.float32)
        if out is None:
            out = np.empty((len(data), *first.shape[1:]), dtype=np.float32)
        out[idx] = first
    assert out is not None
    return out


@dataclass
class Quality:
    """Quality of one variant on held-out data, against the fp32 reference (measured)."""

    metric: str
    value: float
    reference: float
    drop: float
    items: int
    max_abs_error: float
    data: str
    accuracy: float | None = None
    top1_agreement: float | None = None
    cosine_mean: float | None = None
    cosine_min: float | None = None
    nn_agreement: float | None = None
    method: str = "measured"

    def to_dict(self) -> dict[str, Any]:
        """Flat metrics for the run store, prefixed ``quality_`` where the name is generic."""
        row = asdict(self)
        out = {f"quality_{k}": row.pop(k) for k in ("metric", "value", "reference", "drop")}
        out["quality_items"] = row.pop("items")
        out["quality_data"] = row.pop("data")
        out["quality_method"] = row.pop("method")
        out.update(row)
        return out


def evaluate(outputs: np.ndarray, reference: np.ndarray, data: TaskData) -> Quality:
    """Quality figures of ``outputs`` against the fp32 ``reference`` on ``data.held_out``."""
    outputs = np.asarray(outputs, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    if outputs.shape != reference.shape:
        raise InputShapeError(
            f"variant outputs have shape {list(outputs.shape)} but the reference has "
            f"{list(reference.shape)}: a variant must keep the model's outputs"
        )
    held = data.held_out
    common = {
        "items": len(held),
        "max_abs_error": float(np.max(np.abs(outputs - reference))) if outputs.size else 0.0,
        "data": f"{held.description} ({len(held)} items)",
    }
    if data.task == "custom":
        value = float(data.metric(outputs, held.labels))
        ref = float(data.metric(reference, held.labels))
        return Quality(data.metric_name, value, ref, ref - value, **common)
    if data.task == "classification":
        pred, ref_pred = outputs.argmax(-1), reference.argmax(-1)
        acc = float((pred == held.labels).mean())
        ref_acc = float((ref_pred == held.labels).mean())
        return Quality(
            "accuracy",
            acc,
            ref_acc,
            ref_acc - acc,
            accuracy=acc,
            top1_agreement=float((pred == ref_pred).mean()),
            **common,
        )
    cos = _rowwise_cosine(outputs, reference)
    mean = float(cos.mean())
    return Quality(
        "cosine_mean",
        mean,
        1.0,
        1.0 - mean,
        cosine_mean=mean,
        cosine_min=float(cos.min()),
        nn_agreement=nn_agreement(outputs, reference),
        **common,
    )


def nn_agreement(outputs: np.ndarray, reference: np.ndarray) -> float:
    """Share of items whose nearest neighbour (cosine, among the other items) is the same
    under ``outputs`` as under ``reference``: a ranking check that a mean cosine hides.

    >>> x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    >>> nn_agreement(x, x)
    1.0
    """

    def neighbours(x: np.ndarray) -> np.ndarray:
        unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        sim = unit @ unit.T
        np.fill_diagonal(sim, -np.inf)
        return sim.argmax(1)

    if len(outputs) < 2:
        return 1.0
    return float((neighbours(outputs) == neighbours(reference)).mean())


def _rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1)
    b = b.reshape(len(b), -1)
    num = (a * b).sum(1)
    den = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return num / den
