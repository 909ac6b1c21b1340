"""Monitor: watch a live runtime; its J/prediction, W, idle share and p99 per window, as charts.

A view over :func:`workbench.monitor.monitor`: the URL of a running ``python -m serving BUNDLE``,
the bundle it serves (the export tab's last bundle, when there is one), the window length and
how long to watch. Start scrapes in the background; the chart and the verdict against the
bundle's profile redraw after every window; Stop ends it after the current window. Every window
is stored in the run store as a run of kind ``monitor``.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from widgets.session import Session
from widgets.view import Panel, headline
from workbench.monitor import monitor, parse_duration
from workbench.monitor.charts import monitor_chart


class MonitorPanel(Panel):
    """Scrape a live runtime's /metrics every window and chart what it reports."""

    title = "Monitor"
    slug = "monitor"

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.url = W.Text(value="http://127.0.0.1:8080", description="runtime URL")
        self.url.add_class("wb-monitor-url")
        self.bundle = W.Text(description="bundle").add_class("wb-monitor-bundle")
        self.bundle.layout.width = "480px"
        self.interval = W.Text(value="10s", description="window").add_class("wb-monitor-interval")
        self.duration = W.Text(value="10m", description="watch for").add_class("wb-monitor-for")
        self.token = W.Password(description="token").add_class("wb-monitor-token")
        run = W.Button(description="Start", button_style="primary").add_class("wb-monitor-run")
        run.on_click(lambda _: self.act(self.run))
        progress, stop = self.make_progress(run)
        self.verdict = headline("wb-monitor-verdict")
        self.report = None
        self.listen(self._on_session)
        self.finish(
            W.HBox([self.url, self.token]),
            self.bundle,
            W.HBox([self.interval, self.duration, run, stop]),
            progress,
            self.verdict,
        )

    def _on_session(self, topic: str, value: Any) -> None:
        if topic == "bundle" and value is not None:
            self.bundle.value = str(value.path)

    def run(self) -> None:
        """Start monitoring (the Start button); the result is in ``self.report`` when done."""
        interval = parse_duration(self.interval.value, "window")
        duration = parse_duration(self.duration.value, "watch for")
        url, bundle = self.url.value.strip(), self.bundle.value.strip()
        total = max(1, int(duration // interval))
        self.say(f"watching {url} every {interval:g} s for {duration:g} s ...")

        def work():
            return monitor(
                url,
                bundle,
                interval_s=interval,
                duration_s=duration,
                token=self.token.value or None,
                store=self.session.store,
                on_window=lambda report, _w: self._draw(report, total),
                stop=self.stop_event,
            )

        self.start(work, self._done)

    def _draw(self, report, total: int) -> None:
        """Redraw after a window: the chart, the table and the verdict so far."""
        self.report = report
        frame = report.to_frame()
        self.tick(len(report.windows), total)
        self.show(monitor_chart(frame, title=report.model), frame[list(report.SUMMARY_COLUMNS)])
        style = "color:#b00" if report.drifted else ""
        self.verdict.value = f'<span style="{style}">{html.escape(report.summary())}</span>'

    def _done(self, report) -> None:
        self.report = report
        if not report.windows:
            self.say("stopped before the first window ended")
            return
        ids = report.run_ids
        self.say(f"{len(report.windows)} windows stored as monitor runs {ids[0]}..{ids[-1]}")
