"""Shipped data sets and their deterministic splits (train / validation / held-out test).

Nothing is downloaded: digits come with scikit-learn, sentences from the project's ``datasets/``.

Example
-------
>>> split = digits_split(seed=0)
>>> split.X_train.shape[1:], split.X_test.shape[0] > 0
((64,), True)
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from workbench.errors import ConfigError
from workbench.paths import datasets_dir


@dataclass(frozen=True)
class DigitsSplit:
    """scikit-learn's 8x8 digits, pixels scaled to [0, 1]: float32 rows of 64, int64 labels."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


@lru_cache(maxsize=4)
def digits_split(
    seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.2
) -> DigitsSplit:
    """Stratified, seeded split of ``sklearn.datasets.load_digits`` (1,797 images)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1 or not 0 < val_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ConfigError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must each lie in "
            "(0, 1) "
            "and sum to less than 1"
        )
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    X_rest, X_test, y_rest, y_test = train_test_split(
        X, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    X_train, X_val, y_train, y_val = train_test_split(
        X_rest,
        y_rest,
        test_size=val_fraction / (1 - test_fraction),
        random_state=seed,
        stratify=y_rest,
    )
    return DigitsSplit(X_train, y_train, X_val, y_val, X_test, y_test)


@dataclass(frozen=True)
class SentenceSplit:
    """Sentences for an encoder: a calibration set and a held-out set, with their topics."""

    calibration: list[str]
    held_out: list[str]
    held_out_topics: list[str]


def load_sentences(path: Path | None = None) -> list[tuple[str, str]]:
    """``(topic, sentence)`` rows of ``datasets/sentences.tsv``."""
    path = path or datasets_dir() / "sentences.tsv"
    if not path.exists():
        raise ConfigError(
            f"sentence data not found at {path}; run from a checkout of the project or set "
            "WORKBENCH_DATASETS_DIR to the folder holding sentences.tsv"
        )
    with path.open(newline="", encoding="utf-8") as f:
        return [(row["topic"], row["sentence"]) for row in csv.DictReader(f, delimiter="\t")]


def sentence_split(seed: int = 0, calibration_fraction: float = 0.3) -> SentenceSplit:
    """Seeded split of the shipped sentences into calibration and held-out parts."""
    rows = load_sentences()
    order = np.random.default_rng(seed).permutation(len(rows))
    n_cal = int(round(len(rows) * calibration_fraction))
    cal = [rows[i][1] for i in order[:n_cal]]
    held = [rows[i] for i in order[n_cal:]]
    return SentenceSplit(cal, [s for _, s in held], [t for t, _ in held])
