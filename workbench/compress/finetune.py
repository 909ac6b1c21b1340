"""Shared fine-tuning for the compression builders that change a torch module (pruning,
distillation): batches of the training split, the fp32 teacher's outputs, a short fine-tune, and
the export of the result as an ONNX variant.

Fine-tuning uses the labels where the task has them (cross-entropy), else it matches the fp32
model's outputs on the training data (cosine for encoders, mean squared error otherwise).

Example
-------
>>> import numpy as np
>>> from workbench.compress.quality import ArraySet
>>> data = ArraySet({"x": np.zeros((5, 2), np.float32)}, labels=None, description="toy")
>>> [len(idx) for idx, _ in train_batches(data, 2, np.random.default_rng(0))]
[2, 2, 1]
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.checks import whole
from workbench.compress.quality import ArraySet, DataSet, SentenceSet, TaskData
from workbench.models.handle import ModelHandle, export_onnx

#: Fine-tuning epochs by task when a builder is given none.
DEFAULT_EPOCHS = {"classification": 10, "embedding": 2, "custom": 3}
DEFAULT_LR = {"classification": 1e-3, "embedding": 5e-5, "custom": 1e-3}


def train_batches(
    data: DataSet, batch_size: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, list[torch.Tensor]]]:
    """Shuffled ``(indices, input tensors)``; sentences stay length-bucketed within a batch."""
    if isinstance(data, SentenceSet):
        batches = list(data.batches(batch_size))
        for i in rng.permutation(len(batches)):
            idx, feed = batches[i]
            yield idx, [torch.from_numpy(v) for v in feed.values()]
        return
    order = rng.permutation(len(data))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield idx, [torch.from_numpy(np.ascontiguousarray(v[idx])) for v in data.inputs.values()]


def first_output(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def teacher_outputs(teacher: nn.Module, data: DataSet) -> torch.Tensor:
    """The fp32 model's first output on every item of ``data`` (in the data's order)."""
    out: torch.Tensor | None = None
    teacher.eval()
    with torch.inference_mode():
        for idx, feed in data.batches(64):
            got = first_output(teacher(*[torch.from_numpy(v) for v in feed.values()])).float()
            if out is None:
                out = torch.empty((len(data), *got.shape[1:]))
            out[torch.from_numpy(np.asarray(idx))] = got
    assert out is not None
    return out


def fine_tune(
    module: nn.Module,
    teacher: nn.Module,
    data: TaskData,
    epochs: int | None = None,
    lr: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """A short fine-tune of ``module`` on ``data.train``; returns what was done.

    Labels (classification) give cross-entropy; otherwise the student matches ``teacher``'s
    outputs (cosine for embeddings, mean squared error otherwise).
    """
    train = data.train
    epochs = DEFAULT_EPOCHS[data.task] if epochs is None else int(epochs)
    lr = DEFAULT_LR[data.task] if lr is None else float(lr)
    whole("epochs", epochs, minimum=0, fix="0 skips fine-tuning")
    use_labels = data.task == "classification" and train.labels is not None
    target = None if use_labels else teacher_outputs(teacher, train)
    labels = torch.from_numpy(np.asarray(train.labels)) if use_labels else None
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=lr)
    batch = 32 if isinstance(train, ArraySet) else 16
    module.train()
    for _ in range(epochs):
        for idx, tensors in train_batches(train, batch, rng):
            opt.zero_grad()
            out = first_output(module(*tensors))
            sel = torch.from_numpy(np.asarray(idx))
            if use_labels:
                loss = nn.functional.cross_entropy(out, labels[sel])
            elif data.task == "embedding":
                loss = 1 - nn.functional.cosine_similarity(out, target[sel], dim=-1).mean()
            else:
                loss = nn.functional.mse_loss(out, target[sel])
            loss.backward()
            opt.step()
    module.eval()
    objective = "cross-entropy on labels" if use_labels else "match fp32 outputs"
    return {
        "fine_tune_epochs": epochs,
        "fine_tune_lr": lr,
        "fine_tune_objective": objective,
        "fine_tune_data": f"{train.description} ({len(train)} items)",
    }


def export_variant(base: ModelHandle, module: nn.Module, path: Any) -> Any:
    """Export a transformed torch module with the base model's inputs (checked against torch)."""
    handle = dataclasses.replace(base, torch_module=copy.deepcopy(module).eval(), onnx_path=None)
    return export_onnx(handle, path)
