"""Compression: model variants (quantised, cast, pruned, distilled, graph-optimised), their
quality measured on held-out data, and the search that picks the one to ship.

- :mod:`~workbench.compress.registry`: ``Variant``, ``VariantSpec`` and the registry of builders.
- :mod:`~workbench.compress.quantize`, :mod:`~workbench.compress.prune`,
  :mod:`~workbench.compress.distill`: the builders (imported here, which registers them);
  :mod:`~workbench.compress.finetune`: the fine-tuning that pruning and distillation share.
- :mod:`~workbench.compress.quality`: held-out data sets and quality figures.
- :mod:`workbench.compress.search`: ``optimize(model, max_quality_drop=..., slo_p99_ms=...)``.

Example
-------
>>> from workbench.compress import variant_specs
>>> "ort-int8-dynamic-per-channel" in variant_specs()
True
"""

from workbench.compress import distill, prune, quantize  # noqa: F401  (registers the builders)
from workbench.compress.quality import ArraySet, Quality, SentenceSet, TaskData, evaluate
from workbench.compress.registry import (
    BuildContext,
    Variant,
    VariantSkipped,
    VariantSpec,
    build_variant,
    custom_variant,
    get_spec,
    variant_specs,
)

__all__ = [
    "ArraySet",
    "BuildContext",
    "Quality",
    "SentenceSet",
    "TaskData",
    "Variant",
    "VariantSkipped",
    "VariantSpec",
    "build_variant",
    "custom_variant",
    "evaluate",
    "get_spec",
    "variant_specs",
]
