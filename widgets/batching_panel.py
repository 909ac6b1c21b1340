"""Batching and right-sizing: the batch curve of what the session serves, and the cheapest
hardware meeting a load and a p99 target.

A view over :func:`workbench.plan.batch_curve.batch_sweep` (measured; runs in the background with a
progress bar and a stop button) and :func:`workbench.plan.sizing.right_size` (simulated, estimated).
What it measures is the compression lab's recommendation when there is one, else the model.
"""

from __future__ import annotations

import html

import ipywidgets as W

from widgets.session import Session
from widgets.view import Panel, headline, number_box, whole_numbers
from workbench.plan.batch_curve import batch_sweep
from workbench.plan.simulator import ServerConfig
from workbench.plan.sizing import right_size
from workbench.report.charts import batch_curve_chart


class BatchingPanel(Panel):
    """Measure the batch curve, then right-size for a target load and p99."""

    title = "Batching & sizing"
    slug = "batching"

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.target = W.HTML().add_class("wb-batching-target")
        self.batch_sizes = W.Text(value="1,2,4,8,16,32", description="batch sizes")
        self.batch_sizes.add_class("wb-batching-sizes")
        self.seconds = W.BoundedFloatText(
            value=0.3, min=0.05, max=30, step=0.1, description="s per size"
        ).add_class("wb-batching-seconds")
        run = W.Button(description="Measure batch curve", button_style="primary")
        run.add_class("wb-batching-run")
        run.on_click(lambda _: self.run())
        progress, stop = self.make_progress(run)
        self.rps = number_box("target requests/s", 200.0, "wb-sizing-rps")
        self.slo = number_box("p99 target (ms)", 50.0, "wb-sizing-slo")
        self.max_batch = W.BoundedIntText(value=8, min=1, max=4096, description="max batch")
        self.max_batch.add_class("wb-sizing-max-batch")
        size = W.Button(description="Right-size").add_class("wb-sizing-run")
        size.on_click(lambda _: self.act(self._size))
        self.knee = headline("wb-batching-knee")
        self.best = headline("wb-sizing-best")
        self.listen(self._on_session)
        self.finish(
            self.target,
            W.HBox([self.batch_sizes, self.seconds]),
            W.HBox([run, stop, progress]),
            self.knee,
            W.HBox([self.rps, self.slo, self.max_batch, size]),
            self.best,
        )
        self._refresh_target()

    def _refresh_target(self) -> None:
        try:
            _, label, _ = self.session.serving_choice()
        except Exception:
            label = "nothing yet: load a model"
        self.target.value = f"measures: <b>{html.escape(label)}</b>"

    def _on_session(self, topic: str, value: object) -> None:
        if topic in ("model", "search"):
            self._refresh_target()

    def run(self) -> None:
        """Start the batch sweep (the Measure button)."""
        self.act(self._start)

    def _start(self) -> None:
        handle, label, threads = self.session.serving_choice()
        sizes = whole_numbers(self.batch_sizes.value, "batch sizes")
        backend = "onnxruntime"
        rec = self.session.recommendation
        if rec is not None:
            backend = rec.candidate.variant.backend

        def work():
            return batch_sweep(
                handle,
                batch_sizes=sizes,
                backend=backend,
                threads=threads,
                store=self.session.store,
                progress=False,
                max_seconds=float(self.seconds.value),
                iterations=10**6,
                warmup=3,
                stop=self.stop_event.is_set,
                on_progress=self.tick,
            )

        self.say(f"measuring {label} at batch sizes {sizes} ...")
        self.start(work, self._done)

    def _done(self, result) -> None:
        self.session.publish("batching", result)
        frame = result.to_frame()
        measured = len(frame)
        self.knee.value = (
            f"knee: <b>batch {result.knee_batch_size}</b> ({html.escape(result.knee_rule)}); "
            f"{measured} sizes measured"
        )
        self.max_batch.value = int(result.knee_batch_size)
        self.say(f"batch sweep {result.sweep_id} stored ({measured} runs)")
        self.show(
            batch_curve_chart(frame, title=result.model),
            frame[[c for c in result.SUMMARY_COLUMNS if c in frame]],
        )

    def _size(self) -> None:
        sweep = self.session.batching
        if sweep is None:
            from workbench.errors import ConfigError

            raise ConfigError("no batch curve yet: press 'Measure batch curve' first")
        server = ServerConfig(max_batch_rows=min(int(self.max_batch.value),
                                                 sweep.curve.max_batch_size))  # fmt: skip
        result = right_size(
            sweep.curve, float(self.rps.value), float(self.slo.value), server=server,
            requests=2000,
        )  # fmt: skip
        self.session.publish("sizing", result)
        frame = result.to_frame()
        feasible = frame[frame["feasible"]]
        if result.best is None:
            self.best.value = "no configuration meets the target; see the reasons below"
            metrics = {"feasible": False}
        else:
            b = result.best
            self.best.value = (
                f"cheapest: <b>{b.machines} x {html.escape(b.hardware)}</b>, {b.instances} "
                f"instance(s) x {b.threads} thread(s): ${b.usd_per_million:.4g} and "
                f"{b.kwh_per_million:.4g} kWh per 1M inferences (estimated); binding: "
                f"{result.binding}"
            )
            metrics = {
                "feasible": True,
                "hardware": b.hardware,
                "machines": b.machines,
                "usd_per_million": b.usd_per_million,
                "kwh_per_million": b.kwh_per_million,
                "latency_ms_p99": b.latency_ms_p99,
                "binding": result.binding,
                "method": "estimated",
            }
        self.session.record(
            "sizing",
            config={"rate_per_s": result.rate_per_s, "slo_p99_ms": result.slo_p99_ms,
                    "sweep_id": sweep.sweep_id, "max_batch_rows": server.max_batch_rows},
            metrics=metrics,
        )  # fmt: skip
        table = feasible if not feasible.empty else frame
        self.show(
            batch_curve_chart(sweep.to_frame(), title=sweep.model),
            table[[c for c in [*result.SUMMARY_COLUMNS, "reason"] if c in table]].head(10),
        )
