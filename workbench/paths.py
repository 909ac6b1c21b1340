"""Where the workbench keeps its files: user cache (trained demo models) and data (run store)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "inference-workbench"


def cache_dir() -> Path:
    """Directory for re-creatable artefacts (trained demo models, ONNX exports).

    ``WORKBENCH_CACHE_DIR`` overrides the platform default (``~/.cache/inference-workbench``).
    """
    path = Path(os.environ.get("WORKBENCH_CACHE_DIR") or platformdirs.user_cache_dir(APP))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """Directory for the user's own records (the run store)."""
    path = Path(platformdirs.user_data_dir(APP))
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_db_path() -> Path:
    """The run store's path: ``WORKBENCH_DB`` if set, else ``runs.sqlite`` in the user data dir."""
    env = os.environ.get("WORKBENCH_DB")
    return Path(env) if env else data_dir() / "runs.sqlite"


def datasets_dir() -> Path:
    """The shipped ``datasets/`` folder (next to the package in a checkout or editable install)."""
    env = os.environ.get("WORKBENCH_DATASETS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "datasets"


def notebooks_dir() -> Path:
    """The shipped ``notebooks/`` folder (next to the package in a checkout or editable install)."""
    return Path(__file__).resolve().parent.parent / "notebooks"
