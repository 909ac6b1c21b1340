"""PyTorch variants: dynamic int8 for Linear layers, unstructured magnitude pruning, and
structured pruning that physically removes channels and neurons, each pruned model fine-tuned
briefly on the training split.

Structured pruning knows two shapes of model:

- an ``nn.Sequential`` of ``Conv2d`` / ``Linear`` layers with element-wise layers, pooling,
  ``BatchNorm`` and ``Flatten`` between them (the digits demos): output channels (neurons) of
  every layer but the last are ranked by the L1 norm of their weights and the weakest removed;
  the next layer loses the matching inputs;
- a BERT-style encoder (MiniLM): the feed-forward neurons of every layer (``intermediate.dense``
  rows with ``output.dense`` columns), ranked by the product of their weight norms.

The layers are rebuilt smaller, so parameters, FLOPs and time fall for real (no masks).

Fine-tuning uses the labels where the task has them (cross-entropy), else it matches the fp32
model's outputs on the training data (cosine for encoders, mean squared error otherwise).

Example
-------
>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
>>> kept = prune_sequential(net, sparsity=0.5)
>>> net[0].out_features, net[2].in_features, kept
(4, 4, [4])
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from workbench.checks import fraction
from workbench.compress.finetune import export_variant, fine_tune
from workbench.compress.registry import (
    BuildContext,
    Variant,
    VariantSkipped,
    make_variant,
    register_variant,
    torch_copy,
)
from workbench.models.handle import ModelHandle

#: Layers that pass channels through unchanged.
_PASS_THROUGH = (
    nn.ReLU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.LeakyReLU,
    nn.ReLU6,
    nn.Dropout,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Identity,
)


def check_sparsity(sparsity: float) -> float:
    """A share of weights (or channels) to remove, in [0, 1)."""
    fix = "pass the share of weights to remove, e.g. 0.5 removes half (1 would remove everything)"
    return fraction("sparsity", sparsity, open_high=True, fix=fix)


# ------------------------------------------------------------------------- dynamic int8


@register_variant("torch-int8-dynamic", "quantization", "torch dynamic int8 for nn.Linear")
def build_torch_dynamic(base: ModelHandle, ctx: BuildContext) -> Variant:
    """``torch.ao.quantization.quantize_dynamic`` of every ``nn.Linear`` (int8 weights)."""
    module = torch_copy(base)
    if not any(isinstance(m, nn.Linear) for m in module.modules()):
        raise VariantSkipped(f"{base.name} has no nn.Linear layer for torch dynamic int8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
        quantized = torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)
    engine = torch.backends.quantized.engine
    return make_variant(
        base,
        "torch-int8-dynamic",
        "quantization",
        {"dtype": "qint8", "layers": "Linear"},
        quantized,
        metadata={"quantized_engine": engine},
    )


# ------------------------------------------------------------------------- unstructured


def prunable_weights(module: nn.Module) -> list[tuple[nn.Module, str]]:
    """``(layer, "weight")`` for every Linear and Conv layer."""
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return [(m, "weight") for m in module.modules() if isinstance(m, kinds)]


@register_variant(
    "torch-prune-magnitude",
    "pruning",
    "unstructured global magnitude pruning + fine-tune",
    sparsity=0.5,
    epochs=None,
)
def build_magnitude(
    base: ModelHandle, ctx: BuildContext, sparsity: float = 0.5, epochs: int | None = None
) -> Variant:
    """Zero the ``sparsity`` share of smallest-magnitude weights (global over Linear and Conv
    layers), fine-tune with the mask held, then bake the zeros in. Dense storage: the file does
    not shrink and dense kernels do not skip zeros; the metadata gives the measured sparsity."""
    sparsity = check_sparsity(sparsity)
    module = torch_copy(base)
    targets = prunable_weights(module)
    if not targets:
        raise VariantSkipped(f"{base.name} has no Linear or Conv layer to prune")
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=sparsity)
    tuned = fine_tune(module, base.torch_module, ctx.data, epochs, seed=ctx.seed)
    for layer, name in targets:
        prune.remove(layer, name)
    zeros = sum(int((layer.weight == 0).sum()) for layer, _ in targets)
    total = sum(layer.weight.numel() for layer, _ in targets)
    meta = {"sparsity_measured": zeros / total, "storage": "dense", **tuned}
    params = {"sparsity": sparsity, "epochs": tuned["fine_tune_epochs"]}
    return make_variant(base, "torch-prune-magnitude", "pruning", params, module, metadata=meta)


# ------------------------------------------------------------------------- structured


def _keep_index(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    keep = max(1, round((1 - sparsity) * len(scores)))
    return torch.sort(torch.topk(scores, keep).indices).values


def _slice_linear(layer: nn.Linear, out_idx: Any = None, in_idx: Any = None) -> nn.Linear:
    w = layer.weight.data
    b = None if layer.bias is None else layer.bias.data
    if out_idx is not None:
        w, b = w[out_idx], None if b is None else b[out_idx]
    if in_idx is not None:
        w = w[:, in_idx]
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    new.weight.data.copy_(w)
    if b is not None:
        new.bias.data.copy_(b)
    return new


def _slice_conv(layer: nn.Conv2d, out_idx: Any = None, in_idx: Any = None) -> nn.Conv2d:
    if layer.groups != 1:
        raise VariantSkipped("structured pruning of grouped convolutions is not supported")
    w = layer.weight.data
    b = None if layer.bias is None else layer.bias.data
    if out_idx is not None:
        w, b = w[out_idx], None if b is None else b[out_idx]
    if in_idx is not None:
        w = w[:, in_idx]
    new = nn.Conv2d(
        w.shape[1],
        w.shape[0],
        layer.kernel_size,
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        bias=b is not None,
        padding_mode=layer.padding_mode,
    )
    new.weight.data.copy_(w)
    if b is not None:
        new.bias.data.copy_(b)
    return new


def _slice_batchnorm(layer: nn.BatchNorm2d | nn.BatchNorm1d, idx: Any) -> nn.Module:
    new = type(layer)(len(idx), eps=layer.eps, momentum=layer.momentum, affine=layer.affine)
    for name in ("weight", "bias", "running_mean", "running_var"):
        src = getattr(layer, name)
        if src is not None:
            getattr(new, name).data.copy_(src.data[idx])
    return new


def prune_sequential(seq: nn.Sequential, sparsity: float) -> list[int]:
    """Remove the ``sparsity`` share of output channels / neurons of every Conv2d or Linear but
    the last, in place; returns the kept counts, layer by layer."""
    sparsity = check_sparsity(sparsity)
    layers = list(seq)
    weighted = [i for i, m in enumerate(layers) if isinstance(m, (nn.Conv2d, nn.Linear))]
    for i, m in enumerate(layers):
        allowed = (nn.Conv2d, nn.Linear, nn.Flatten, nn.BatchNorm1d, nn.BatchNorm2d)
        if not isinstance(m, allowed + _PASS_THROUGH):
            raise VariantSkipped(
                f"structured pruning cannot follow channels through {type(m).__name__} "
                f"(layer {i}); it supports Sequential Conv2d/Linear stacks and BERT encoders"
            )
    kept = []
    for i in weighted[:-1]:
        layer = layers[i]
        scores = layer.weight.detach().abs().reshape(layer.weight.shape[0], -1).sum(1)
        idx = _keep_index(scores, sparsity)
        old = layer.weight.shape[0]
        layers[i] = (_slice_conv if isinstance(layer, nn.Conv2d) else _slice_linear)(
            layer, out_idx=idx
        )
        kept.append(len(idx))
        flattened = False
        for j in range(i + 1, len(layers)):
            nxt = layers[j]
            if isinstance(nxt, (nn.BatchNorm1d, nn.BatchNorm2d)):
                layers[j] = _slice_batchnorm(nxt, idx)
            elif isinstance(nxt, nn.Flatten):
                flattened = True
            elif isinstance(nxt, nn.Conv2d):
                layers[j] = _slice_conv(nxt, in_idx=idx)
                break
            elif isinstance(nxt, nn.Linear):
                if flattened and nxt.in_features != old:
                    spatial = nxt.in_features // old
                    idx_in = (idx[:, None] * spatial + torch.arange(spatial)[None, :]).reshape(-1)
                else:
                    idx_in = idx
                layers[j] = _slice_linear(nxt, in_idx=idx_in)
                break
    for i, m in enumerate(layers):
        seq[i] = m
    return kept


def ffn_blocks(module: nn.Module) -> list[nn.Module]:
    """BERT-style layers: modules with ``intermediate.dense`` and ``output.dense`` Linears."""
    blocks = []
    for m in module.modules():
        inter, out = getattr(m, "intermediate", None), getattr(m, "output", None)
        if isinstance(getattr(inter, "dense", None), nn.Linear) and isinstance(
            getattr(out, "dense", None), nn.Linear
        ):
            blocks.append(m)
    return blocks


def prune_ffn_neurons(module: nn.Module, sparsity: float) -> list[int]:
    """Remove the ``sparsity`` share of feed-forward neurons of every BERT-style layer in place;
    returns the kept counts."""
    sparsity = check_sparsity(sparsity)
    kept = []
    for block in ffn_blocks(module):
        up, down = block.intermediate.dense, block.output.dense
        scores = up.weight.detach().norm(dim=1) * down.weight.detach().norm(dim=0)
        idx = _keep_index(scores, sparsity)
        block.intermediate.dense = _slice_linear(up, out_idx=idx)
        block.output.dense = _slice_linear(down, in_idx=idx)
        kept.append(len(idx))
    return kept


def structured_prune(module: nn.Module, sparsity: float) -> tuple[str, list[int]]:
    """Prune ``module`` in place by its shape; returns (what was pruned, kept counts)."""
    if isinstance(module, nn.Sequential):
        return "channels/neurons of a Sequential stack", prune_sequential(module, sparsity)
    if ffn_blocks(module):
        return "feed-forward neurons of each encoder layer", prune_ffn_neurons(module, sparsity)
    raise VariantSkipped(
        f"structured pruning does not know {type(module).__name__}: it supports nn.Sequential "
        "Conv2d/Linear stacks and BERT-style encoders; prune it yourself and pass a custom variant"
    )


def _structured(
    base: ModelHandle, ctx: BuildContext, sparsity: float, epochs: int | None
) -> tuple[nn.Module, dict[str, Any]]:
    sparsity = check_sparsity(sparsity)
    key = f"structured-{sparsity}-{epochs}"
    if key not in ctx.memo:
        module = torch_copy(base)
        before = sum(p.numel() for p in module.parameters())
        what, kept = structured_prune(module, sparsity)
        tuned = fine_tune(module, base.torch_module, ctx.data, epochs, seed=ctx.seed)
        after = sum(p.numel() for p in module.parameters())
        meta = {
            "pruned": what,
            "kept_per_layer": kept,
            "params_before": before,
            "params_after": after,
            **tuned,
        }
        ctx.memo[key] = (module, meta)
    return ctx.memo[key]


@register_variant(
    "torch-prune-structured",
    "pruning",
    "channels/neurons removed + fine-tune (torch)",
    sparsity=0.5,
    epochs=None,
)
def build_structured(
    base: ModelHandle, ctx: BuildContext, sparsity: float = 0.5, epochs: int | None = None
) -> Variant:
    """Structured pruning at ``sparsity`` with a short fine-tune, run in torch eager."""
    module, meta = _structured(base, ctx, sparsity, epochs)
    params = {"sparsity": sparsity, "epochs": meta["fine_tune_epochs"]}
    return make_variant(base, "torch-prune-structured", "pruning", params, module, metadata=meta)


@register_variant(
    "ort-prune-structured",
    "pruning",
    "channels/neurons removed + fine-tune, exported to ONNX",
    sparsity=0.5,
    epochs=None,
)
def build_structured_onnx(
    base: ModelHandle, ctx: BuildContext, sparsity: float = 0.5, epochs: int | None = None
) -> Variant:
    """The structured-pruned model exported to ONNX (same fine-tuned weights as the torch one)."""
    module, meta = _structured(base, ctx, sparsity, epochs)
    path = export_variant(base, module, ctx.path(f"ort-prune-structured-{sparsity}"))
    params = {"sparsity": sparsity, "epochs": meta["fine_tune_epochs"]}
    return make_variant(base, "ort-prune-structured", "pruning", params, path, metadata=meta)
