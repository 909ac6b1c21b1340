"""Export: write a serving bundle of what the session serves, with its measured figures.

A view over :func:`workbench.ship.bundle.export`. The model is the compression lab's recommendation
when there is one (else the session's model); the batch size comes from the batching knee, the
threads from the recommendation, the price from the cost tab and the figures from the run they
were measured in; all can be changed before exporting.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import ipywidgets as W
import pandas as pd

from widgets.session import Session
from widgets.view import Panel, headline, number_box
from workbench.ship.bundle import export


class ExportPanel(Panel):
    """Write a bundle folder (ONNX, manifest, runtime, Docker/Kubernetes/Ray files)."""

    title = "Export"
    slug = "export"

    def __init__(self, session: Session, out_root: str | Path = "bundles") -> None:
        super().__init__(session)
        self.out_root = Path(out_root)
        self.target = W.HTML().add_class("wb-export-target")
        self.folder = W.Text(description="folder").add_class("wb-export-folder")
        self.folder.layout.width = "480px"
        self.max_batch = W.BoundedIntText(value=32, min=1, max=4096, description="max batch")
        self.max_batch.add_class("wb-export-max-batch")
        self.threads = W.BoundedIntText(value=1, min=1, max=256, description="threads")
        self.threads.add_class("wb-export-threads")
        self.cache = W.Checkbox(value=False, description="response cache").add_class(
            "wb-export-cache"
        )
        self.slo = number_box("p99 objective (ms)", 50.0, "wb-export-slo")
        self.budget = number_box("monthly budget $", 500.0, "wb-export-budget")
        self.overwrite = W.Checkbox(value=False, description="replace folder").add_class(
            "wb-export-overwrite"
        )
        run = W.Button(description="Export bundle", button_style="primary")
        run.add_class("wb-export-run")
        run.on_click(lambda _: self.act(self.run))
        self.written = headline("wb-export-written")
        self.listen(self._on_session)
        self.finish(
            self.target,
            self.folder,
            W.HBox([self.max_batch, self.threads, self.cache]),
            W.HBox([self.slo, self.budget, self.overwrite, run]),
            self.written,
        )
        self._refresh()

    def _refresh(self) -> None:
        try:
            handle, label, threads = self.session.serving_choice()
        except Exception:
            self.target.value = "exports: <b>nothing yet: load a model</b>"
            return
        self.target.value = f"exports: <b>{html.escape(label)}</b>"
        self.folder.value = str(self.out_root / handle.name)
        if threads:
            self.threads.value = int(threads)

    def _on_session(self, topic: str, value: Any) -> None:
        if topic in ("model", "search"):
            self._refresh()
        elif topic == "batching":
            self.max_batch.value = int(value.knee_batch_size)
        elif topic == "cache_hit_rate":
            self.cache.value = float(value) > 0

    def run(self):
        """Write the bundle (the Export button); returns a
        :class:`workbench.ship.bundle.BundleInfo`."""
        handle, label, _ = self.session.serving_choice()
        figures = self.session.cost_inputs.get("source_run_id")
        usd_h = self.session.cost_inputs.get("instance_usd_per_h")
        self.say(f"exporting {label} ...")
        info = export(
            handle,
            self.folder.value.strip(),
            batching={"max_batch_rows": int(self.max_batch.value)},
            threads=int(self.threads.value),
            cache=bool(self.cache.value),
            slo_p99_ms=float(self.slo.value) or None,
            monthly_budget_usd=float(self.budget.value) or None,
            instance_usd_per_h=usd_h if figures is not None else None,
            utilisation=float(self.session.cost_inputs.get("utilisation", 0.5)),
            profile=figures,
            store=self.session.store.path,
            overwrite=bool(self.overwrite.value),
        )
        self.session.publish("bundle", info)
        m = info.manifest
        cost = m.cost.usd_per_million
        self.session.record(
            "export",
            config={"path": str(info.path), "model": label, "profile_run_id": figures},
            metrics={"files": len(info.checksums), "usd_per_million": cost,
                     "cost_method": m.cost.method},
        )  # fmt: skip
        price = f"; ${cost:.4g} per 1M predictions ({m.cost.method})" if cost is not None else ""
        self.written.value = (
            f"wrote <b>{html.escape(str(info.path))}</b> ({len(info.checksums)} files){price}. "
            f"Serve it: <code>python -m serving {html.escape(str(info.path))} --port 8080</code>"
        )
        files = pd.DataFrame(
            [{"file": k, "sha256": v[:16] + "..."} for k, v in sorted(info.checksums.items())]
        )
        self.show(files)
        self.say(f"exported {label}")
        return info
