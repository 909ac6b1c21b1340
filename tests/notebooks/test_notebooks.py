"""Every notebook in notebooks/ runs headless (papermill, kernel ``python3``) on the demo models,
with short budgets; and the scheduled report gates on a real, injected regression.

Notebooks added later are picked up by the glob and run with their own defaults unless
``FAST`` gives them parameters. Executed copies go to tmp; nothing is written to the checkout.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

papermill = pytest.importorskip("papermill")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

#: Short budgets so each notebook runs in seconds (the defaults are meant for a reader).
FAST: dict[str, dict] = {
    "01_profile": {"batch_sizes": [1, 8], "max_seconds": 0.2, "iterations": 100},
    "02_energy": {"max_seconds": 0.6, "energy_min_seconds": 0.3, "idle_seconds": 0.1},
    "03_compression": {
        "variants": ["ort-fp32", "ort-int8-dynamic-per-channel"],
        "batch_sizes": [32],
        "measure_seconds": 0.1,
    },
    "04_batching_sizing": {"batch_sizes": [1, 4, 16], "max_seconds": 0.1, "rate_rps": 1000.0},
    "05_cascade_cache": {"max_seconds": 0.2},
    "06_lifecycle_cost": {"max_seconds": 0.5},
    "07_export_serve": {"max_seconds": 0.2},
    "quickstart": {"max_seconds": 0.4},
    "scheduled_report": {"max_seconds": 0.5, "iterations": 300},
}


@pytest.fixture
def kernel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel inherits this environment: the checkout first on the path, the session's
    model cache (demo models train once) and this test's private run store."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), *paths]))
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.fixture(scope="module", autouse=True)
def _demo_models_trained() -> None:
    """Train the demo models once, here, so no notebook's timing includes it."""
    from workbench.models import load_model

    for name in ("digits-cnn", "digits-mlp"):
        load_model(name)


def execute(nb: Path, out_dir: Path, **parameters) -> dict:
    out = out_dir / nb.name
    papermill.execute_notebook(
        str(nb),
        str(out),
        parameters=parameters,
        kernel_name="python3",
        progress_bar=False,
        cwd=str(out_dir),
        execution_timeout=300,
    )
    return json.loads(out.read_text())


def test_notebooks_found() -> None:
    names = {nb.stem for nb in NOTEBOOKS}
    assert set(FAST) <= names, f"missing notebooks: {set(FAST) - names}"


def test_committed_notebooks_have_no_outputs() -> None:
    for nb in NOTEBOOKS:
        doc = json.loads(nb.read_text())
        for cell in doc["cells"]:
            if cell["cell_type"] == "code":
                assert not cell["outputs"] and cell["execution_count"] is None, nb.name


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs(nb: Path, tmp_path: Path, kernel_env: None) -> None:
    params = dict(FAST.get(nb.stem, {}))
    if nb.stem == "scheduled_report":
        params["output_path"] = str(tmp_path / "report" / "report.html")
    start = time.perf_counter()
    doc = execute(nb, tmp_path, **params)
    print(f"{nb.name}: {time.perf_counter() - start:.1f} s")
    errors = [
        o
        for c in doc["cells"]
        if c["cell_type"] == "code"
        for o in c["outputs"]
        if o["output_type"] == "error"
    ]
    assert not errors
    # altair rendered offline: an SVG, never the CDN-loading HTML renderer
    outputs = [o for c in doc["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert not any("cdn.jsdelivr" in json.dumps(o) for o in outputs)
    if nb.stem == "scheduled_report":
        assert (tmp_path / "report" / "report.html").is_file()
