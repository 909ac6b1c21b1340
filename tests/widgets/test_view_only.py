"""``widgets`` is only a view: ``workbench`` never imports it or ipywidgets, and no panel times,
meters or runs a model itself."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_workbench_imports_no_widget_library() -> None:
    code = (
        "import importlib, pkgutil, sys, workbench\n"
        "for m in pkgutil.iter_modules(workbench.__path__):\n"
        "    try:\n"
        "        importlib.import_module('workbench.' + m.name)\n"
        "    except ImportError as exc:\n"
        "        print('skipped', m.name, exc)\n"
        "bad = [n for n in sys.modules if n.split('.')[0] in ('ipywidgets', 'widgets', 'voila')]\n"
        "print('BAD', bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BAD []" in done.stdout


def test_panels_hold_no_measurement_code() -> None:
    forbidden = re.compile(
        r"perf_counter|monotonic\(|import onnxruntime|import torch|InferenceSession|"
        r"\bnp\.percentile|begin_window|\* 3600|/ 3\.6e6"
    )
    hits = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted((ROOT / "widgets").glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if forbidden.search(line)
    ]
    assert hits == []
