"""``workbench batching`` run as a user runs it: a real subprocess, a real ONNX file, real store."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from tests.workbench.test_cli import cli
from workbench.measure.store import RunStore


@pytest.fixture
def tiny_onnx(tmp_path):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4)).eval()
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(
        module,
        (torch.randn(1, 32),),
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        dynamo=False,
    )
    return str(path)


def test_sweep_simulate_and_right_size(tiny_onnx, db_path):
    out = cli(
        "batching", tiny_onnx, "-n", "1", "-n", "4", "--max-seconds", "0.2", "--threads", "1",
        "--max-batch", "4", "--rate", "500", "--duration-s", "4", "--slo-p99-ms", "20",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "batch sweep" in out.stdout and "share of max" in out.stdout
    assert "predicted for" in out.stdout and "mean batch" in out.stdout
    assert "cheapest hardware for 500 req/s" in out.stdout
    assert re.search(r"best: \d+ x \S+, .* per 1M inferences; binding constraint: \w+", out.stdout)
    runs = RunStore(db_path).runs(kind="profile")
    assert sorted(r.config["batch_size"] for r in runs) == [1, 4]
    # the stored sweep again, measuring nothing
    again = cli("batching", "ignored", "--sweep-id", runs[0].sweep_id, "--max-batch", "4")
    assert again.returncode == 0, again.stderr
    assert len(RunStore(db_path).runs(kind="profile")) == 2


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--max-batch", "0"], "max_batch_size=0 must be a whole number >= 1"),
        (["--max-delay-ms", "-1"], "max_queue_delay_ms=-1.0 must be a finite number >= 0"),
        (["--sweep-id", "nope"], "no profile runs with sweep id 'nope'"),
    ],
)
def test_bad_input_is_one_clear_line(args, expected, db_path):
    out = cli("batching", "digits-mlp", *args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stderr.startswith("error:") and expected in out.stderr.replace("\n", " ")
    assert "Traceback" not in out.stderr + out.stdout
