"""Compression lab: search variants x batch size x threads, see the Pareto frontier, the
recommendation with its reason, and where its gain comes from (runtime, threads, batch size,
compression: one measured step each).

A view over :func:`workbench.compress.search.optimize`. The search runs in the background; the stop
button ends it between steps and keeps what finished. The recommendation is published to the
session, where batching, cost and export pick it up.
"""

from __future__ import annotations

import html

import ipywidgets as W

from widgets.session import Session
from widgets.view import Panel, headline, whole_numbers
from workbench.compress.search.constraints import parse_fraction
from workbench.compress.search.runner import MIN_MEASURE_SECONDS, STRATEGIES, optimize
from workbench.demo import DEMO_VARIANTS
from workbench.measure.backends import logical_cores
from workbench.report.charts import pareto_chart


class CompressionPanel(Panel):
    """Run a short compression search and show its frontier and recommendation."""

    title = "Compression lab"
    slug = "compression"

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        from workbench.compress.registry import variant_specs

        names = sorted(variant_specs())
        self.variants = W.SelectMultiple(
            options=names, value=[v for v in DEMO_VARIANTS if v in names], rows=6,
            description="variants",
        ).add_class("wb-compression-variants")  # fmt: skip
        self.max_drop = W.Text(value="1%", description="max quality drop").add_class(
            "wb-compression-max-drop"
        )
        self.batch_sizes = W.Text(value="1,32", description="batch sizes").add_class(
            "wb-compression-batches"
        )
        self.threads = W.Text(value="1", description="threads").add_class("wb-compression-threads")
        self.strategy = W.Dropdown(options=STRATEGIES, value="grid", description="strategy")
        self.strategy.add_class("wb-compression-strategy")
        self.seconds = W.BoundedFloatText(
            value=0.2, min=MIN_MEASURE_SECONDS, max=30, step=0.1, description="s per config"
        ).add_class("wb-compression-seconds")
        run = W.Button(description="Search", button_style="primary").add_class("wb-compression-run")
        run.on_click(lambda _: self.run())
        progress, stop = self.make_progress(run)
        self.recommended = headline("wb-compression-recommended")
        self.finish(
            W.HBox([self.variants, W.VBox([self.max_drop, self.batch_sizes, self.threads])]),
            W.HBox([self.strategy, self.seconds]),
            W.HBox([run, stop, progress]),
            self.recommended,
        )

    def run(self) -> None:
        """Start the search (the Search button)."""
        self.act(self._start)

    def _start(self) -> None:
        handle = self.session.require_handle()
        variants = list(self.variants.value)
        drop = parse_fraction(self.max_drop.value)
        batches = whole_numbers(self.batch_sizes.value, "batch sizes")
        threads = [min(t, logical_cores()) for t in whole_numbers(self.threads.value, "threads")]
        steps = max(1, len(variants) * (1 + len(batches) * max(1, len(threads))))
        count = {"n": 0}

        def stop() -> bool:  # called between steps: it also moves the progress bar
            count["n"] += 1
            self.tick(count["n"], steps)
            return self.stop_event.is_set()

        def work():
            return optimize(
                handle,
                max_quality_drop=drop,
                variants=variants,
                batch_sizes=batches,
                threads=threads,
                strategy=self.strategy.value,
                measure_seconds=float(self.seconds.value),
                store=self.session.store,
                progress=False,
                stop=stop,
            )

        self.say(f"searching {len(variants)} variants of {handle.name} ...")
        self.start(work, self._done)

    def _done(self, result) -> None:
        self.tick(1, 1)
        self.session.publish("search", result)
        frame = result.to_frame()
        rec = result.recommendation
        items: list = []
        if not frame.empty:
            items.append(
                pareto_chart(
                    frame,
                    frontier=result.frontier(),
                    recommended=None if rec is None else rec.candidate.to_dict(),
                )
            )
            items.append(frame[[c for c in [*result.SUMMARY_COLUMNS, "run_id"] if c in frame]])
        att = result.attribution
        if att is not None:  # the gain split by step, with the product check under it
            items.append(att.to_frame()[list(att.SUMMARY_COLUMNS)])
            items.append(f"{att.summary()}. {att.check_line()}")
        if result.skipped:
            import pandas as pd

            items.append(pd.DataFrame(result.skipped))
        if rec is None:
            self.recommended.value = f"no recommendation: {html.escape(str(result.unmet))}"
        else:
            c = rec.candidate
            gain = rec.items_per_joule_gain
            extra = f"; {gain:.1f}x items per joule vs the baseline" if gain else ""
            self.recommended.value = (
                f"recommended: <b>{c.label}</b> ({c.variant.backend}), quality drop "
                f"{c.quality_drop:.2%}{extra} (energy {c.energy_method}). "
                f"{html.escape(rec.reason)}"
            )
        stopped = f"; stopped: {result.stopped}" if result.stopped else ""
        self.say(f"search {result.search_id}: {len(frame)} configurations in "
                 f"{result.seconds:.1f} s{stopped}")  # fmt: skip
        self.show(*items)
