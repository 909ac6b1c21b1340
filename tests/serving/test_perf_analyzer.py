"""NVIDIA's perf_analyzer drives the runtime unchanged, with JSON and with binary tensors.

perf_analyzer reads the V2 model metadata and Triton's ``/v2/models/{m}/config``. It is found at
``$PERF_ANALYZER``, or in ``~/.cache/perf-analyzer``, or installed there by the project's shared
``get-perf-analyzer`` script; the test is skipped (with the reason) only when none works.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from serving_helpers import REPO, export_bundle, serving

INSTALLER = REPO.parent / "shared" / "tools" / "get-perf-analyzer"


def _perf_analyzer() -> str:
    candidates = [
        os.environ.get("PERF_ANALYZER"),
        str(Path.home() / ".cache" / "perf-analyzer" / "perf_analyzer.sh"),
    ]
    for path in candidates:
        if path and Path(path).is_file():
            return path
    if not INSTALLER.is_file():
        pytest.skip(f"perf_analyzer is not installed and {INSTALLER} is absent")
    done = subprocess.run(["bash", str(INSTALLER)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.skip(f"perf_analyzer cannot be installed: {done.stderr.strip()[-300:]}")
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("tensors", ["json", "binary"])
def test_perf_analyzer_drives_the_runtime(models_dir, tmp_path, tensors):
    tool = _perf_analyzer()
    bundle = export_bundle(models_dir / "lin.onnx", tmp_path / "lin", name="lin")
    data = tmp_path / "input.json"
    data.write_text(json.dumps({"data": [{"input": [0.25] * 8}]}))
    formats = ["--input-tensor-format", "json", "--output-tensor-format", "json"]
    with serving([bundle], tmp_path / "log") as server:
        done = subprocess.run(
            [
                tool,
                "-m",
                "lin",
                "-u",
                server.url,
                "-i",
                "http",
                "--concurrency-range",
                "2",
                "--input-data",
                str(data),
                "--measurement-mode",
                "count_windows",
                "--measurement-request-count",
                "200",
                "-s",
                "50",
                "--max-trials",
                "5",
                *(formats if tensors == "json" else []),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        throughput = float(re.search(r"Throughput: ([\d.]+) infer/sec", done.stdout).group(1))
        assert throughput > 0
        answered = server.metric("serving_requests_total", model="lin", code="200")
        assert answered >= 200
        assert server.metric("serving_failures_total", model="lin") == 0
