"""The run store: every measurement appended to SQLite (WAL), queried back as DataFrames.

Each ``add`` is its own committed transaction, so a process killed in the middle of a sweep keeps
every configuration that had finished.

Example
-------
>>> store = RunStore(":memory:")
>>> run_id = store.add("profile", model="digits-mlp", fingerprint="ab12", config={"batch_size": 1},
...                    metrics={"latency_ms_p50": 0.1})
>>> store.get(run_id).metrics["latency_ms_p50"]
0.1
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.errors import StoreError
from workbench.paths import default_db_path

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    sweep_id TEXT,
    config TEXT NOT NULL,
    metrics TEXT NOT NULL,
    environment TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS runs_model ON runs(model);
CREATE INDEX IF NOT EXISTS runs_sweep ON runs(sweep_id);
"""


@dataclass
class Run:
    """One stored measurement: scalar ``config`` and ``metrics``, non-scalar ``details``
    (per-operator tables, raw latency samples)."""

    id: int
    created_at: str
    kind: str
    model: str
    fingerprint: str
    sweep_id: str | None
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def flat(self) -> dict[str, Any]:
        """One row: identity columns, then config and metrics keys side by side."""
        row: dict[str, Any] = {
            "run_id": self.id,
            "created_at": self.created_at,
            "kind": self.kind,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "sweep_id": self.sweep_id,
        }
        row.update(self.config)
        row.update(self.metrics)
        return row


@contextmanager
def open_store(store: RunStore | str | Path | bool | None) -> Iterator[RunStore]:
    """The run store a caller means: its own ``RunStore`` lent as is (not closed), a path opened
    and closed, ``None``/``True`` the default store, ``False`` a throw-away in-memory store."""
    if isinstance(store, RunStore):
        yield store
        return
    path = ":memory:" if store is False else None if store is None or store is True else store
    with RunStore(path) as db:
        yield db


class RunStore:
    """Append-only SQLite store of runs.

    Parameters
    ----------
    path:
        Database file; ``None`` uses ``WORKBENCH_DB`` or the user data directory.
        ``":memory:"`` gives a throw-away store.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = str(default_db_path() if path is None else path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"cannot open the run store at {self.path} ({exc}); point WORKBENCH_DB at a "
                "writable SQLite file or pass another path"
            ) from exc

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(
        self,
        kind: str,
        *,
        model: str,
        fingerprint: str,
        config: dict[str, Any],
        metrics: dict[str, Any],
        environment: dict[str, Any] | None = None,
        sweep_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> int:
        """Append one run and commit it at once; returns its id."""
        created = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        row = (
            created,
            kind,
            model,
            fingerprint,
            sweep_id,
            json.dumps(config, default=str),
            json.dumps(metrics, default=str),
            json.dumps(environment or {}, default=str),
            json.dumps(details or {}, default=str),
        )
        with self._lock, self._conn:
            cur = self._conn.execute(
                "INSERT INTO runs (created_at, kind, model, fingerprint, sweep_id, config, "
                "metrics, environment, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        return int(cur.lastrowid)

    def get(self, run_id: int) -> Run:
        """The run with this id; a clear error if there is none."""
        runs = self._select("WHERE id = ?", [int(run_id)])
        if not runs:
            raise StoreError(
                f"no run with id {run_id} in {self.path}; list the stored runs with "
                "`workbench runs`"
            )
        return runs[0]

    def runs(
        self,
        *,
        model: str | None = None,
        kind: str | None = None,
        sweep_id: str | None = None,
        limit: int | None = None,
    ) -> list[Run]:
        """Stored runs, newest first, filtered by any of model, kind and sweep id."""
        where, args = [], []
        for column, value in (("model", model), ("kind", kind), ("sweep_id", sweep_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        clause += " ORDER BY id DESC"
        if limit is not None:
            clause += " LIMIT ?"
            args.append(int(limit))
        return self._select(clause, args)

    def to_frame(self, **filters: Any) -> pd.DataFrame:
        """The runs matching ``filters`` (see :meth:`runs`) as a DataFrame, one row per run."""
        return pd.DataFrame([run.flat() for run in self.runs(**filters)])

    def _select(self, clause: str, args: list[Any]) -> list[Run]:
        sql = (
            "SELECT id, created_at, kind, model, fingerprint, sweep_id, config, metrics, "
            f"environment, details FROM runs {clause}"
        )
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [
            Run(r[0], r[1], r[2], r[3], r[4], r[5], *(json.loads(x) for x in r[6:10])) for r in rows
        ]
