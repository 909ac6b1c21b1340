"""A disk that fills up while ``workbench export`` writes: one clear error line, exit code 2, and
no bundle folder, archive or temporary file left behind.

The full disk is a real one for the process: ``RLIMIT_FSIZE`` makes the kernel refuse writes past
the limit (``EFBIG``, with ``SIGXFSZ`` ignored), exactly where ``ENOSPC`` would strike.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from serving.manifest import load_bundle
from workbench.ship.bundle import export

pytestmark = pytest.mark.reliability
REPO = Path(__file__).resolve().parents[3]
LIMITED = """\
import resource, signal, sys
limit = int(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write raises OSError(EFBIG)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from workbench.cli.app import main
sys.exit(main(sys.argv[2:]))
"""


def _model(path: Path) -> Path:
    w = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["output"])],
        "m",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _export(limit: int, model: Path, out: Path) -> subprocess.CompletedProcess:
    """``workbench export MODEL OUT --tar`` in a process that may write files of ``limit``
    bytes at most."""
    return subprocess.run(
        [sys.executable, "-c", LIMITED, str(limit), "export", str(model), str(out), "--tar"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1"),
    )


@pytest.fixture(scope="module")
def sizes(tmp_path_factory):
    """A bundle exported without a limit: the largest file and the archive's size."""
    folder = tmp_path_factory.mktemp("sizes")
    model = _model(folder / "m.onnx")
    bundle = export(model, folder / "out" / "b", tar=True).path  # no limit: this succeeds
    load_bundle(bundle)
    largest = max(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    archive = (folder / "out" / "b.tar.gz").stat().st_size
    return model, largest, archive


@pytest.mark.parametrize("where", ["bundle folder", "archive"])
def test_a_full_disk_gives_one_clear_line_and_leaves_nothing_behind(sizes, tmp_path, where):
    model, largest, archive = sizes
    # Below the largest file: the folder cannot be written. Above it but below the archive:
    # every file of the folder is written, then the archive fails half-way.
    assert largest < archive, (largest, archive)
    limit = largest // 2 if where == "bundle folder" else (largest + archive) // 2
    out_dir = tmp_path / "out"
    done = _export(limit, model, out_dir / "b")
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one line, no traceback
    assert f"cannot write the bundle to {out_dir / 'b'}: File too large" in lines[0]
    assert "free some disk space or choose another OUT_DIR" in lines[0]
    # names the file it was writing: a temporary one, since removed
    written = ".b.tar.gz.tmp" if where == "archive" else ".tmp/"
    assert f"({out_dir}/.b." in lines[0] and written in lines[0], lines[0]
    assert list(out_dir.iterdir()) == []  # no folder, no archive, no temporary leftovers
