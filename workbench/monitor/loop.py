"""The monitoring loop: scrape a live runtime every interval, keep each window, judge the drift.

:func:`monitor` reads the bundle (its model name and figures), scrapes ``URL/metrics`` once, then
every ``interval_s`` for ``duration_s``; each window between two scrapes becomes a
:class:`~workbench.monitor.window.Window`, is stored in the run store as a run of kind
``monitor`` (one run per window, the monitoring session's id as the sweep id, so
``workbench runs --kind monitor`` lists them) and is handed to ``on_window`` (the dashboard
redraws its chart there). The whole period, first scrape to last, is what :class:`MonitorReport`
judges against the bundle. ``stop`` (a ``threading.Event``) ends the loop early.

>>> parse_duration("10s"), parse_duration("2m"), parse_duration("1.5"), parse_duration("1h")
(10.0, 120.0, 1.5, 3600.0)
>>> report = monitor("127.0.0.1:8080", "bundles/digits-cnn", interval_s=10, duration_s=600)
...                                                                  # doctest: +SKIP
>>> report.summary()                                                 # doctest: +SKIP
'no drift on digits-cnn over 600 s: ...'
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.checks import duration
from workbench.errors import ConfigError
from workbench.measure.store import RunStore, open_store
from workbench.monitor.drift import Baseline, MonitorReport, Thresholds
from workbench.monitor.scrape import Scrape, fetch, metrics_url
from workbench.monitor.window import Window, window

READY = "serving_model_ready"


def parse_duration(text: str | float, name: str = "duration") -> float:
    """``"10s"``, ``"2m"``, ``"1h"`` or plain seconds (``"30"``, ``2.5``) -> seconds > 0."""
    return duration(
        name,
        text,
        unit="s",
        units=("s", "m", "h"),
        fix="give seconds or a number with s, m or h, e.g. 10s, 2m",
    )


def load_manifest(bundle: str | Path) -> Any:
    """The verified bundle's manifest; a folder that is not a bundle is a ``ConfigError``."""
    from serving.manifest import BundleError, load_bundle

    try:
        return load_bundle(bundle).manifest
    except BundleError as exc:
        raise ConfigError(f"--bundle {bundle}: {exc}") from None


def check_serves(scrape: Scrape, url: str, model: str) -> None:
    """The runtime at ``url`` must serve ``model`` (its ``serving_model_ready`` series)."""
    served = scrape.labels(READY, "model")
    if not served:
        raise ConfigError(
            f"{metrics_url(url)} is not a serving runtime's /metrics (no {READY} series); point "
            "the monitor at `python -m serving BUNDLE`"
        )
    if model not in served:
        raise ConfigError(
            f"{metrics_url(url)} serves {', '.join(served)}, not the bundle's model {model!r}; "
            "pass the bundle that server runs"
        )


def _store_window(store: RunStore, report: MonitorReport, w: Window, session: str) -> int:
    base = report.baseline
    return store.add(
        "monitor",
        model=report.model,
        fingerprint=report.fingerprint,
        sweep_id=session,
        config={"url": report.url, "bundle": report.bundle, "window": len(report.windows)},
        metrics={
            **{k: v for k, v in w.to_dict().items() if k not in ("start", "end")},
            "profile_j_per_prediction": base.j_per_prediction,
            "profile_latency_ms_p99": base.latency_ms_p99,
            "profile_usd_per_1m": base.usd_per_1m,
            "slo_p99_ms": base.slo_p99_ms,
        },
        details={"start": w.start, "end": w.end},
    )


def monitor(
    url: str,
    bundle: str | Path,
    *,
    interval_s: float = 10.0,
    duration_s: float = 600.0,
    token: str | None = None,
    thresholds: Thresholds | None = None,
    store: RunStore | str | Path | bool | None = None,
    on_window: Callable[[MonitorReport, Window], None] | None = None,
    stop: threading.Event | None = None,
) -> MonitorReport:
    """Scrape ``url`` every ``interval_s`` seconds for ``duration_s``; store and judge each window
    against ``bundle``'s figures (``store``: a RunStore, a path, None for the default store,
    False for none kept)."""
    interval_s = parse_duration(interval_s, "interval")
    duration_s = parse_duration(duration_s, "for")
    if duration_s < interval_s:
        raise ConfigError(
            f"--for {duration_s:g} s is shorter than one --interval {interval_s:g} s window; "
            "monitor for at least one window"
        )
    manifest = load_manifest(bundle)
    baseline = Baseline.from_manifest(manifest)
    report = MonitorReport(
        url=metrics_url(url),
        bundle=str(bundle),
        model=manifest.name,
        baseline=baseline,
        thresholds=thresholds or Thresholds(),
        fingerprint=str(manifest.profile.get("fingerprint", "")),
    )
    stop = stop or threading.Event()
    first = previous = fetch(url, token)
    check_serves(first, url, manifest.name)
    session = f"monitor-{uuid.uuid4().hex[:8]}"
    with open_store(store) as db:
        start, tick = time.monotonic(), 1
        while tick * interval_s <= duration_s + 1e-9:
            if stop.wait(max(0.0, start + tick * interval_s - time.monotonic())):
                break
            scrape = fetch(url, token)
            w = window(previous, scrape, model=manifest.name, usd_per_h=baseline.usd_per_h)
            report.windows.append(w)
            report.overall = window(first, scrape, model=manifest.name,
                                    usd_per_h=baseline.usd_per_h)  # fmt: skip
            report.run_ids.append(_store_window(db, report, w, session))
            if on_window is not None:
                on_window(report, w)
            previous, tick = scrape, tick + 1
    return report
