"""One notebook session: the model and every result so far, shared by all panels.

Panels read what they need from the session and publish what they produce; a panel that
subscribed is called back so it can refresh (the compression lab's recommendation reaches the
batching, cost and export panels without being typed again). Every result is in the run store:
the workbench steps store their own runs; the results of pure steps (right-sizing, cascade,
cache, cost, export) are recorded here, and :meth:`Session.reopen` brings a past run back.

Example
-------
>>> s = Session(store=":memory:")
>>> seen = []
>>> s.subscribe(lambda topic, value: seen.append(topic))
>>> s.publish("cache_hit_rate", 0.3)
>>> seen, s.cache_hit_rate
(['cache_hit_rate'], 0.3)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError, StoreError
from workbench.measure.store import Run, RunStore
from workbench.models import ModelHandle, load_model

Listener = Callable[[str, Any], None]

#: What panels publish: topic -> the session attribute it sets.
TOPICS = (
    "model",
    "profile",
    "search",
    "batching",
    "sizing",
    "cascade",
    "cache_hit_rate",
    "cost_inputs",
    "cost",
    "bundle",
    "figures",
    "reopened",
)


@dataclass(frozen=True)
class Figures:
    """The measured run that cost and export use: its id, what it measured, and its label."""

    run_id: int
    label: str
    handle: ModelHandle | None = None
    threads: int | None = None


class Session:
    """The shared state of a dashboard.

    Parameters
    ----------
    store: run store path (``None``: ``WORKBENCH_DB`` or the user data directory).
    background: run long work (sweeps, searches) in a thread with a stop button; ``False`` runs
        it in the caller (tests, scripts).
    """

    def __init__(self, store: str | Path | None = None, background: bool = True) -> None:
        self.store = RunStore(store)
        self.background = background
        self.handle: ModelHandle | None = None
        self.profile: Any = None
        self.search: Any = None
        self.batching: Any = None
        self.sizing: Any = None
        self.cascade: Any = None
        self.cache_hit_rate: float = 0.0
        self.cost_inputs: dict[str, Any] = {}
        self.cost: Any = None
        self.bundle: Any = None
        self.figures: Figures | None = None
        self.reopened: Run | None = None
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    # -- observers

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(topic, value)`` after every :meth:`publish`."""
        self._listeners.append(listener)

    def publish(self, topic: str, value: Any) -> None:
        """Set the session's ``topic`` to ``value`` and tell every listener."""
        if topic not in TOPICS:
            raise ConfigError(f"unknown session topic {topic!r}; use one of {', '.join(TOPICS)}")
        with self._lock:
            setattr(self, "handle" if topic == "model" else topic, value)
        for listener in list(self._listeners):
            listener(topic, value)

    # -- the model

    def load(self, model: Any) -> ModelHandle:
        """Load a model (demo name, ``.onnx`` path, handle) and make it the session's model."""
        handle = load_model(model)
        for name in ("profile", "search", "batching", "sizing", "cascade", "figures"):
            setattr(self, name, None)  # results of another model no longer apply
        self.publish("model", handle)
        return handle

    def require_handle(self) -> ModelHandle:
        if self.handle is None:
            raise ConfigError(
                "no model chosen: pick a demo model (digits-cnn, ...) or give an .onnx path in "
                "the Profile tab first"
            )
        return self.handle

    # -- what downstream panels use

    @property
    def recommendation(self) -> Any:
        return None if self.search is None else self.search.recommendation

    def serving_choice(self) -> tuple[ModelHandle, str, int | None]:
        """What to batch, size and export: the recommended variant if the compression lab has
        one, else the session's model. Returns ``(handle, label, threads)``."""
        rec = self.recommendation
        if rec is not None:
            c = rec.candidate
            return c.variant.handle, f"recommended {c.label}", c.threads
        handle = self.require_handle()
        threads = None if self.profile is None else self.profile.threads
        return handle, f"{handle.name} (as loaded)", threads

    def cost_sources(self) -> dict[str, int]:
        """Measured runs a cost scenario can use, by label: the profile, the search baseline,
        the recommendation, and a reopened run."""
        out: dict[str, int] = {}
        if self.profile is not None and self.profile.run_id is not None:
            p = self.profile
            out[f"profiled: {p.model} {p.backend} b={p.batch_size} (run {p.run_id})"] = p.run_id
        if self.search is not None:
            base = self.search.baseline
            if base is not None and base.run_id is not None:
                out[f"search baseline: {base.label} (run {base.run_id})"] = base.run_id
            rec = self.recommendation
            if rec is not None and rec.candidate.run_id is not None:
                c = rec.candidate
                out[f"recommended: {c.label} (run {c.run_id})"] = c.run_id
        if self.figures is not None and self.figures.run_id not in out.values():
            out[self.figures.label] = self.figures.run_id
        return out

    # -- the run store

    def record(self, kind: str, *, config: dict[str, Any], metrics: dict[str, Any]) -> int:
        """Append a result of a pure step (no measurement of its own) to the run store."""
        handle = self.handle
        return self.store.add(
            kind,
            model=handle.name if handle else "",
            fingerprint=handle.fingerprint if handle else "",
            config=config,
            metrics=metrics,
        )

    def runs_frame(self, limit: int = 50) -> Any:
        return self.store.to_frame(limit=limit)

    def reopen(self, run_id: int) -> str:
        """Bring a stored run back into the session; returns what it restored, in words."""
        try:
            run = self.store.get(int(run_id))
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"run id {run_id!r} is not a whole number; pick one from the list"
            ) from exc
        if run.kind in ("profile", "variant"):
            if run.metrics.get("energy_j_per_item") is None:
                note = "; it has no energy figure, so cost cannot use it (profile with energy)"
            else:
                note = "; cost and export now use its figures"
            label = (
                f"reopened run {run.id}: {run.kind} {run.model} b={run.config.get('batch_size')}"
            )
            self.publish("figures", Figures(run.id, label, None, run.config.get("threads")))
            self.publish("reopened", run)
            return label + note
        if run.kind == "cost":
            self.publish("cost_inputs", dict(run.config))
            self.publish("reopened", run)
            return f"reopened run {run.id}: cost inputs restored in the Cost tab"
        self.publish("reopened", run)
        return f"reopened run {run.id} ({run.kind}): shown below"

    def close(self) -> None:
        self.store.close()
