"""Cascade and cache: a small model in front of a large one, and a response cache.

Views over :mod:`workbench.plan.cascade` (both models profiled for their cost per million, scored on
held-out data at every threshold, the cheapest threshold meeting an accuracy target picked) and
:mod:`workbench.plan.caching` (an LRU cache replayed over a Zipf key trace). The cache hit rate
chosen here flows into the cost panel.
"""

from __future__ import annotations

import ipywidgets as W
import pandas as pd

from widgets.session import Session
from widgets.view import Panel, headline, number_box
from workbench.compress.quality import demo_task_data
from workbench.measure.profiling import profile
from workbench.models import load_model
from workbench.models.zoo import DEMOS
from workbench.plan.caching import cache_sweep, zipf_keys
from workbench.plan.cascade import cascade_sweep, model_probabilities, pick_threshold
from workbench.plan.cascade import usd_per_million_items as usd_per_million

MAX_ENTRIES_CHOICES = (0, 10, 30, 100, 300, 1000)


class CascadePanel(Panel):
    """Cascade threshold for an accuracy target; cache hit rate for a key distribution."""

    title = "Cascade & cache"
    slug = "cascade"

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.small = W.Dropdown(options=DEMOS, value="digits-mlp", description="small model")
        self.small.add_class("wb-cascade-small")
        self.large = W.Dropdown(options=DEMOS, value="digits-cnn", description="large model")
        self.large.add_class("wb-cascade-large")
        self.min_accuracy = W.BoundedFloatText(
            value=0.97, min=0, max=1, step=0.005, description="min accuracy"
        ).add_class("wb-cascade-accuracy")
        self.usd_per_h = number_box("instance $/h", 0.34, "wb-cascade-usd-h")
        run = W.Button(description="Plan cascade", button_style="primary")
        run.add_class("wb-cascade-run").on_click(lambda _: self.act(self._cascade))
        self.choice = headline("wb-cascade-choice")
        self.requests = W.BoundedIntText(value=20000, min=100, max=10**6, description="requests")
        self.requests.add_class("wb-cache-requests")
        self.keys = W.BoundedIntText(value=2000, min=1, max=10**6, description="distinct keys")
        self.keys.add_class("wb-cache-keys")
        self.exponent = W.BoundedFloatText(value=1.0, min=0, max=5, step=0.1, description="Zipf s")
        self.exponent.add_class("wb-cache-exponent")
        self.max_entries = W.Dropdown(
            options=MAX_ENTRIES_CHOICES, value=100, description="cache entries"
        ).add_class("wb-cache-max-entries")
        cache = W.Button(description="Simulate cache").add_class("wb-cache-run")
        cache.on_click(lambda _: self.act(self._cache))
        self.hit_rate = headline("wb-cache-hit-rate")
        self.finish(
            W.HTML("<b>Cascade</b>: every item runs the small model; unsure ones escalate."),
            W.HBox([self.small, self.large]),
            W.HBox([self.min_accuracy, self.usd_per_h, run]),
            self.choice,
            W.HTML("<b>Response cache</b>: LRU over a seeded Zipf key trace."),
            W.HBox([self.requests, self.keys, self.exponent]),
            W.HBox([self.max_entries, cache]),
            self.hit_rate,
        )

    def _figures(self, handle) -> tuple[float, float | None, str]:
        p = profile(
            handle, batch_size=32, iterations=10**6, max_seconds=0.3, operators=False,
            energy=True, energy_min_seconds=0.3, idle_seconds=0, store=self.session.store,
        )  # fmt: skip
        return (
            usd_per_million(float(self.usd_per_h.value), p.throughput_items_per_s),
            p.energy.energy_j_per_item if p.energy else None,
            p.energy.method if p.energy else "unmeasured",
        )

    def _cascade(self) -> None:
        small, large = load_model(self.small.value), load_model(self.large.value)
        self.say(f"profiling {small.name} and {large.name}, scoring held-out data ...")
        data_s, data_l = demo_task_data(small).held_out, demo_task_data(large).held_out
        probs_s = model_probabilities(small, next(iter(data_s.inputs.values())))
        probs_l = model_probabilities(large, next(iter(data_l.inputs.values())))
        usd_s, j_s, method_s = self._figures(small)
        usd_l, j_l, method_l = self._figures(large)
        sweep = cascade_sweep(
            probs_s, probs_l, data_s.labels,
            small_usd_per_million=usd_s, large_usd_per_million=usd_l,
            small_energy_j_per_item=j_s, large_energy_j_per_item=j_l,
        )  # fmt: skip
        choice = pick_threshold(sweep, float(self.min_accuracy.value))
        self.session.publish("cascade", choice)
        self.session.record(
            "cascade",
            config={"small": small.name, "large": large.name, "min_accuracy": choice.min_accuracy,
                    "instance_usd_per_h": self.usd_per_h.value},
            metrics={**choice.__dict__, "items": sweep.items, "energy_method": method_l},
        )  # fmt: skip
        self.choice.value = (
            f"threshold <b>{choice.threshold:.3f}</b>: accuracy {choice.accuracy:.2%} "
            f"(measured on {sweep.items} held-out items), {choice.escalation_rate:.1%} escalated, "
            f"${choice.usd_per_million:.4g} per 1M, <b>{choice.saved_vs_large_pct:.1f}% cheaper</b>"
            f" than {large.name} alone (throughput measured; energy {method_s}/{method_l})"
        )
        frame = sweep.to_frame()
        step = max(1, len(frame) // 12)
        self.show(frame.iloc[::step])
        self.say(f"small alone {sweep.small_accuracy:.2%}, large alone {sweep.large_accuracy:.2%}")

    def _cache(self) -> None:
        keys = zipf_keys(int(self.requests.value), int(self.keys.value), float(self.exponent.value))
        cost = self.session.cost
        usd = cost.inference_usd_per_million if cost is not None else None
        frame = cache_sweep(keys, max_entries=MAX_ENTRIES_CHOICES, usd_per_million=usd)
        row = frame[frame["max_entries"] == self.max_entries.value].iloc[0]
        rate = float(row["hit_rate"])
        self.session.publish("cache_hit_rate", rate)
        self.session.record(
            "cache",
            config={"requests": len(keys), "keys": int(self.keys.value),
                    "exponent": float(self.exponent.value), "max_entries": int(row["max_entries"])},
            metrics={"hit_rate": rate, "method": "simulated"},
        )  # fmt: skip
        self.hit_rate.value = (
            f"hit rate at {int(row['max_entries'])} entries: <b>{rate:.1%}</b> (simulated); "
            "the Cost tab now uses it"
        )
        self.show(pd.DataFrame(frame))
