"""A bundle runs in a fresh virtualenv holding only the bundle's own pinned requirements."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import tritonclient.http as triton
from serving_helpers import export_bundle, reference, serving

NETWORK_HINTS = (
    "Could not find a version",
    "No matching distribution",
    "Failed to establish",
    "Temporary failure in name resolution",
    "Network is unreachable",
)


@pytest.mark.slow
def test_a_bundle_serves_from_a_clean_virtualenv_with_only_its_requirements(models_dir, tmp_path):
    bundle = export_bundle(models_dir / "lin.onnx", tmp_path / "bundle", name="lin")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "-r", str(bundle / "requirements.txt")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    if install.returncode and any(hint in install.stderr for hint in NETWORK_HINTS):
        pytest.skip(
            f"no package index reachable to install the bundle's requirements: "
            f"{install.stderr.strip().splitlines()[-1]}"
        )
    assert install.returncode == 0, install.stderr
    probe = subprocess.run(
        [python, "-c", "import workbench"], capture_output=True, env=env, cwd=bundle, timeout=60
    )
    assert probe.returncode != 0, "the clean virtualenv must not see the workbench"

    with serving([bundle], tmp_path / "log", python=python, cwd=bundle, env=env) as server:
        x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
        client = triton.InferenceServerClient(server.url)
        want = reference(models_dir / "lin.onnx", {"input": x})["output"]
        for binary in (False, True):
            inp = triton.InferInput("input", [3, 8], "FP32")
            inp.set_data_from_numpy(x, binary_data=binary)
            out = triton.InferRequestedOutput("output", binary_data=binary)
            got = client.infer("lin", [inp], outputs=[out]).as_numpy("output")
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        client.close()
        listening = next(e for e in server.log() if e.get("msg") == "listening")
        assert listening["runtime"] == str((bundle / "serving").resolve())
