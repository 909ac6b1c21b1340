"""Model variants: a transformed model that runs, with what was done to it, and the registry of
the transformations (quantisation, pruning, distillation, casts, graph optimisation).

A :class:`Variant` holds a runnable model (an ONNX file or a torch module), the backend it runs
on, its size and metadata, and a :class:`~workbench.models.handle.ModelHandle` the profiler
measures.
Builders live in :mod:`workbench.compress.quantize`, :mod:`~workbench.compress.prune` and
:mod:`~workbench.compress.distill` and register themselves here by name (the package's
``__init__`` imports them; this module never does); :func:`custom_variant` wraps a user callable
``fn(model) -> model`` as one more builder.

A builder that cannot apply (no GPU, a CPU without bf16, an architecture it does not know)
raises :class:`VariantSkipped` with the reason; the search records it and goes on.

Example
-------
>>> spec = variant_specs()["torch-prune-structured"].with_params(sparsity=0.3)
>>> spec.name, spec.family, spec.params["sparsity"]
('torch-prune-structured-sparsity0.3', 'pruning', 0.3)
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from workbench.compress.quality import TaskData
from workbench.errors import ConfigError, WorkbenchError
from workbench.models.handle import ModelHandle

FAMILIES = ("baseline", "graph", "quantization", "cast", "pruning", "distillation", "custom")


class VariantSkipped(WorkbenchError):
    """A variant that does not apply to this model or machine; the message says why."""


@dataclass
class BuildContext:
    """What builders may use: the model's data, a folder for files, a seed, and a memo shared
    by builders (e.g. one fine-tuned pruned module exported twice)."""

    data: TaskData
    work_dir: Path
    seed: int = 0
    memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def path(self, name: str) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        return self.work_dir / f"{name}.onnx"


class VariantHandle(ModelHandle):
    """A handle whose size and parameter count are the variant's own (a torch variant's size is
    its serialised state dict, not an ONNX export)."""

    variant_size_mb: float = 0.0
    variant_params: int = 0

    @property
    def size_mb(self) -> float:
        return self.variant_size_mb

    @property
    def param_count(self) -> int:
        return self.variant_params


@dataclass
class Variant:
    """A transformed model ready to measure.

    Attributes
    ----------
    name: registry name (``ort-int8-dynamic-per-channel``, ...).
    family: ``baseline``, ``graph``, ``quantization``, ``cast``, ``pruning``, ``distillation``
        or ``custom``.
    params: the settings it was built with.
    model: the runnable model: a ``Path`` to an ONNX file or a ``torch.nn.Module``.
    backend: ``onnxruntime`` or ``torch``; ``device``: ``cpu`` or ``cuda``.
    size_mb: bytes on disk / 1e6 (ONNX file, or the torch state dict as saved).
    params_count: stored weight elements (parameters, or ONNX initializer elements).
    handle: what the profiler measures (inputs of the base model, this variant's weights).
    metadata: facts about the transformation (kept layers, sparsity, ...).
    """

    name: str
    family: str
    params: dict[str, Any]
    model: Any
    backend: str
    size_mb: float
    params_count: int
    handle: ModelHandle = field(repr=False)
    device: str = "cpu"
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no model object)."""
        return {
            "variant": self.name,
            "family": self.family,
            "params": self.params,
            "backend": self.backend,
            "device": self.device,
            "size_mb": self.size_mb,
            "params_count": self.params_count,
            "metadata": self.metadata,
        }


def make_variant(
    base: ModelHandle,
    name: str,
    family: str,
    params: dict[str, Any],
    model: Any,
    *,
    device: str = "cpu",
    metadata: dict[str, Any] | None = None,
) -> Variant:
    """Wrap an ONNX path or a torch module as a variant of ``base`` (same inputs and outputs)."""
    import torch

    if family not in FAMILIES:
        raise ConfigError(f"family={family!r} is not one of {', '.join(FAMILIES)}")
    if isinstance(model, (str, Path)):
        path = Path(model)
        data = path.read_bytes()
        fingerprint = hashlib.sha256(data).hexdigest()
        size_mb, backend = len(data) / 1e6, "onnxruntime"
        count = onnx_param_count(path)
        module, onnx_path = None, path
    elif isinstance(model, torch.nn.Module):
        model.eval()
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        fingerprint = hashlib.sha256(buffer.getvalue()).hexdigest()
        size_mb, backend = buffer.getbuffer().nbytes / 1e6, "torch"
        count = torch_param_count(model)
        module, onnx_path = model, None
    else:
        raise ConfigError(
            f"variant {name!r}: a builder returned {type(model).__name__}; return an ONNX path or "
            "a torch.nn.Module"
        )
    meta = {**base.metadata, **(metadata or {}), "variant": name, "base_model": base.name}
    handle = VariantHandle(
        name=base.name,
        source="variant",
        inputs=list(base.inputs),
        outputs=list(base.outputs),
        fingerprint=fingerprint,
        make_inputs=base.make_inputs,
        torch_module=module,
        onnx_path=onnx_path,
        metadata=meta,
        assets=base.assets,
    )
    handle.variant_size_mb, handle.variant_params = size_mb, count
    return Variant(
        name, family, dict(params), model, backend, size_mb, count, handle, device, metadata or {}
    )


def onnx_param_count(path: Path) -> int:
    """Elements stored in the ONNX file's initializers (weights, scales, zero points)."""
    import numpy as np
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return int(sum(np.prod(t.dims, dtype=np.int64) for t in model.graph.initializer))


def torch_param_count(module: Any) -> int:
    """Weight elements of a torch module, packed int8 weights included."""
    total = 0
    for value in module.state_dict().values():
        if hasattr(value, "numel"):
            total += int(value.numel())
        elif isinstance(value, tuple):  # dynamic-quantised Linear: (packed weight, bias)
            total += sum(int(v.numel()) for v in value if hasattr(v, "numel"))
    return total


def torch_copy(base: ModelHandle) -> Any:
    """A deep copy of the base model's torch module, or a clear skip if it has none."""
    if base.torch_module is None:
        raise VariantSkipped(
            f"{base.name} is an ONNX model: torch transformations need the torch.nn.Module; "
            "pass the module (with example_input) instead of the .onnx file"
        )
    return copy.deepcopy(base.torch_module).eval()


Builder = Callable[..., Variant]


@dataclass(frozen=True)
class VariantSpec:
    """A named builder with its settings: ``build(base, ctx, **params) -> Variant``."""

    name: str
    family: str
    build: Builder = field(repr=False)
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def with_params(self, name: str | None = None, **params: Any) -> VariantSpec:
        """A copy with other settings, e.g. ``spec.with_params(sparsity=0.3)``.

        The name gets the changed settings appended unless ``name`` is given.
        """
        unknown = set(params) - set(self.params)
        if unknown:
            raise ConfigError(
                f"variant {self.name!r} has no setting {sorted(unknown)}; its settings are "
                f"{sorted(self.params)}"
            )
        merged = {**self.params, **params}
        if name is None:
            name = self.name + "".join(f"-{k}{v}" for k, v in params.items())
        return replace(self, name=name, params=merged)

    def __call__(self, base: ModelHandle, ctx: BuildContext) -> Variant:
        variant = self.build(base, ctx, **self.params)
        variant.name = self.name
        return variant


_REGISTRY: dict[str, VariantSpec] = {}


def register_variant(
    name: str, family: str, description: str = "", **params: Any
) -> Callable[[Builder], Builder]:
    """Decorator registering ``build(base, ctx, **params) -> Variant`` under ``name``."""

    def decorate(build: Builder) -> Builder:
        _REGISTRY[name] = VariantSpec(name, family, build, dict(params), description)
        return build

    return decorate


def variant_specs() -> dict[str, VariantSpec]:
    """Every registered variant by name (:mod:`workbench.compress` imports the builders)."""
    return dict(_REGISTRY)


def get_spec(variant: str | VariantSpec | Callable[..., Any]) -> VariantSpec:
    """A registered name, a spec, or a user callable (wrapped by :func:`custom_variant`)."""
    if isinstance(variant, VariantSpec):
        return variant
    if isinstance(variant, str):
        specs = variant_specs()
        if variant not in specs:
            raise ConfigError(
                f"unknown variant {variant!r}; known variants: {', '.join(sorted(specs))}"
            )
        return specs[variant]
    if callable(variant):
        return custom_variant(variant)
    raise ConfigError(
        f"cannot use {type(variant).__name__} as a variant: pass a registered name, a "
        "VariantSpec, or a callable that takes a model and returns one"
    )


def custom_variant(fn: Callable[[Any], Any], name: str | None = None, **params: Any) -> VariantSpec:
    """Wrap a user transformation ``fn(model) -> model`` as a variant.

    ``fn`` receives a copy of the torch module when the base model has one, else the ONNX path,
    plus ``params`` as keyword arguments; it returns a torch module or an ONNX path.

    Example
    -------
    >>> import torch
    >>> spec = custom_variant(lambda m: torch.nn.Sequential(m), name="wrapped")
    >>> spec.family
    'custom'
    """
    label = name or getattr(fn, "__name__", "custom").strip("<>") or "custom"

    def build(base: ModelHandle, ctx: BuildContext, **kw: Any) -> Variant:
        given = torch_copy(base) if base.torch_module is not None else base.onnx()
        result = fn(given, **kw)
        if isinstance(result, Variant):
            return result
        if isinstance(result, ModelHandle):
            result = result.torch_module if result.torch_module is not None else result.onnx()
        return make_variant(base, label, "custom", kw, result)

    return VariantSpec(label, "custom", build, dict(params), f"user transformation {label}")


def build_variant(
    variant: str | VariantSpec | Callable[..., Any], base: ModelHandle, ctx: BuildContext
) -> Variant:
    """Build one variant of ``base``; raises :class:`VariantSkipped` or the builder's error."""
    return get_spec(variant)(base, ctx)


def describe(variant: Variant) -> str:
    """One line: name, backend, size and settings."""
    settings = json.dumps(variant.params, default=str) if variant.params else ""
    return f"{variant.name} ({variant.backend}, {variant.size_mb:.3g} MB) {settings}".strip()


@register_variant("torch-fp32", "baseline", "the model as given, PyTorch eager fp32")
def build_baseline(base: ModelHandle, ctx: BuildContext) -> Variant:
    """The unchanged torch module, run in PyTorch eager: the reference point of a search."""
    return make_variant(base, "torch-fp32", "baseline", {}, torch_copy(base))
