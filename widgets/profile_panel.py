"""Model picker and profile: choose a demo model (or an ONNX path), measure one configuration.

A view over :func:`workbench.measure.profiling.profile`: the latency distribution, the headline
figures and the slowest operators. The profile measures energy over its window by default (the
figure the cost panel needs), labelled measured or estimated.
"""

from __future__ import annotations

import ipywidgets as W

from widgets.session import Session
from widgets.view import Panel, headline
from workbench.measure.backends import logical_cores
from workbench.measure.profiling import Profile, profile
from workbench.models.zoo import DEMOS
from workbench.report.charts import latency_distribution_chart

#: One profile's figures: the profile table's columns, its energy and the latency's method label.
FIGURES = ("model", *Profile.SUMMARY_COLUMNS, *Profile.ENERGY_COLUMNS, "latency_method")


class ProfilePanel(Panel):
    """Pick a model, then profile it at one batch size, backend and thread count."""

    title = "Model & profile"
    slug = "profile"

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.model = W.Dropdown(options=DEMOS, value=None, description="demo model")
        self.model.add_class("wb-model")
        self.path = W.Text(placeholder="or the path of an .onnx file", description="ONNX file")
        self.path.add_class("wb-model-path")
        self.load_button = W.Button(description="Load file").add_class("wb-model-load")
        self.backend = W.Dropdown(
            options=["onnxruntime", "torch"], value="onnxruntime", description="backend"
        ).add_class("wb-profile-backend")
        self.batch_size = W.BoundedIntText(
            value=1, min=1, max=4096, description="batch size"
        ).add_class("wb-profile-batch")
        self.threads = W.BoundedIntText(
            value=logical_cores(), min=1, max=max(1, logical_cores()), description="threads"
        ).add_class("wb-profile-threads")
        self.seconds = W.BoundedFloatText(
            value=0.5, min=0.1, max=30, step=0.1, description="seconds"
        ).add_class("wb-profile-seconds")
        self.energy = W.Checkbox(value=True, description="measure energy").add_class(
            "wb-profile-energy"
        )
        self.run_button = W.Button(description="Profile", button_style="primary")
        self.run_button.add_class("wb-profile-run")
        self.latency = headline("wb-profile-p99")
        self.throughput = headline("wb-profile-throughput")
        self.model.observe(lambda ch: self.act(lambda: self._load(ch["new"])), "value")
        self.load_button.on_click(lambda _: self.act(lambda: self._load(self.path.value.strip())))
        self.run_button.on_click(lambda _: self.run())
        self.listen(self._on_session)
        self.finish(
            W.HBox([self.model, self.path, self.load_button]),
            W.HBox([self.backend, self.batch_size, self.threads]),
            W.HBox([self.seconds, self.energy, self.run_button]),
            W.HBox([self.latency, self.throughput]),
        )

    def _load(self, model: str | None) -> None:
        if not model:
            return
        self.say(f"loading {model} (a demo model trains on first use, then is cached) ...")
        handle = self.session.load(model)
        acc = handle.metadata.get("accuracy_test")
        extra = f"; held-out accuracy {acc:.1%} (measured)" if acc is not None else ""
        self.say(
            f"loaded {handle.name} ({handle.source}, {handle.param_count:,} parameters){extra}"
        )

    def run(self) -> None:
        """Profile the chosen model with the settings shown (the Profile button)."""
        self.act(self._run)

    def _run(self) -> None:
        handle = self.session.require_handle()
        seconds = float(self.seconds.value)
        self.say(f"profiling {handle.name} for about {seconds:g} s ...")
        result = profile(
            handle,
            backend=self.backend.value,
            batch_size=int(self.batch_size.value),
            threads=int(self.threads.value),
            warmup=5,
            iterations=10**6,
            min_iterations=10,
            max_seconds=seconds,
            operator_iterations=10,
            energy=bool(self.energy.value),
            energy_min_seconds=seconds,
            idle_seconds=0.0,
            store=self.session.store,
        )
        self.session.publish("profile", result)
        self.say(f"profiled {handle.name}: stored as run {result.run_id}")

    def _on_session(self, topic: str, value: object) -> None:
        if topic == "profile":
            self._render_profile(value)
        elif topic == "reopened" and value.kind == "profile":
            samples = value.details.get("latencies_ms") or []
            metrics = {**value.config, **value.metrics, "model": value.model, "run_id": value.id}
            self._render(metrics, samples, f"run {value.id} (reopened)", None)

    def _render_profile(self, p) -> None:
        self._render(p.to_dict(), p.latencies_ms, f"{p.model} b={p.batch_size}", p)

    def _render(self, row: dict, samples: list, title: str, p) -> None:
        import pandas as pd

        self.latency.value = f"p99 latency: <b>{row['latency_ms_p99']:.4g} ms</b> (measured)"
        self.throughput.value = (
            f"throughput: <b>{row['throughput_items_per_s']:,.0f} items/s</b> (measured)"
        )
        table = pd.DataFrame([{k: row.get(k) for k in FIGURES}])
        items: list = [table]
        if samples:
            items.insert(0, latency_distribution_chart(samples, title=title))
        if p is not None and p.operators:
            items.append(p.operators_frame().head(8))
        self.show(*items)
