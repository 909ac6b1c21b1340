"""Fixtures of the serving tests: the tiny models every test shares."""

from __future__ import annotations

from pathlib import Path

import pytest
from serving_helpers import embedding_onnx, linear_onnx, slow_onnx


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    linear_onnx(folder / "lin.onnx", in_dim=8, classes=4, seed=0)
    linear_onnx(folder / "small.onnx", in_dim=8, classes=4, seed=1, scale=0.5)
    linear_onnx(folder / "large.onnx", in_dim=8, classes=4, seed=2, in_shape=(2, 4))
    slow_onnx(folder / "slow.onnx")
    embedding_onnx(folder / "emb.onnx")
    return folder
