"""ONNX Runtime and torch precision variants: graph optimisation levels, dynamic int8 (per-tensor
and per-channel), weight-only 8/4-bit (MatMulNBits), mixed precision from a per-layer sensitivity
scan, static int8 in QDQ format (MinMax, Entropy, Percentile), fp16 on GPU, bf16 on CPUs that
compute it natively.

Before quantising, linear layers exported as ``Gemm`` are rewritten as ``MatMul`` + ``Add``
(:func:`gemm_to_matmul`): ONNX Runtime's dynamic quantiser and MatMulNBits only take ``MatMul``.
Dynamic and weight-only variants touch ``MatMul`` nodes only (convolutions stay fp32: ONNX
Runtime's ``ConvInteger`` is slower than its fp32 convolution on CPUs); weights are signed int8
(QUInt8 weights ran about 40 % slower than QInt8 on the CPU these variants were first measured
on).

Example
-------
>>> spec = variant_specs()["ort-int8-dynamic-per-channel"]
>>> spec.family, spec.params["per_channel"]
('quantization', True)
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.compress.quality import ArraySet, DataSet, SentenceSet, check_inputs
from workbench.compress.registry import (
    BuildContext,
    Variant,
    VariantSkipped,
    make_variant,
    register_variant,
    torch_copy,
    variant_specs,  # noqa: F401  (docstring example)
)
from workbench.errors import ConfigError, InputShapeError
from workbench.measure.backends import cuda_available
from workbench.models.handle import ModelHandle

#: ONNX Runtime graph optimisation levels by short name.
GRAPH_LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
#: Operators static quantisation touches: quantising every tensor would also quantise the
#: attention mask arithmetic (large negative fill values), whose range then swamps the scale.
STATIC_OPS = ("MatMul", "Conv", "Gemm")
#: Calibration items fed to static quantisation and the sensitivity scan (at most).
CALIBRATION_ITEMS = 128


# ------------------------------------------------------------------------- graph optimisation


@register_variant("ort-fp32", "graph", "ONNX Runtime fp32, all graph optimisations", level="all")
@register_variant("ort-fp32-opt-extended", "graph", "ONNX Runtime fp32, extended", level="extended")
@register_variant("ort-fp32-opt-basic", "graph", "ONNX Runtime fp32, basic", level="basic")
@register_variant("ort-fp32-opt-disabled", "graph", "ONNX Runtime fp32, none", level="disabled")
def build_graph_level(base: ModelHandle, ctx: BuildContext, level: str = "all") -> Variant:
    """The fp32 ONNX model run at one ONNX Runtime graph optimisation level."""
    if level not in GRAPH_LEVELS:
        raise ConfigError(f"level={level!r} is not one of {', '.join(GRAPH_LEVELS)}")
    meta = {"ort_graph_optimization_level": GRAPH_LEVELS[level]}
    return make_variant(
        base, f"ort-fp32-{level}", "graph", {"level": level}, base.onnx(), metadata=meta
    )


# ------------------------------------------------------------------------- ONNX preparation


def gemm_to_matmul(model: Any) -> int:
    """Rewrite ``Gemm(A, W, C)`` with a constant ``W`` as ``MatMul(A, W') + C`` in place;
    returns how many nodes were rewritten. Gemms with ``alpha``/``beta`` != 1 or ``transA``
    stay as they are."""
    import onnx
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    nodes, count = [], 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
        if (
            node.op_type != "Gemm"
            or not plain
            or attrs.get("transA", 0)
            or node.input[1] not in inits
        ):
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T
        w_name = f"{node.input[1]}_as_matmul"
        model.graph.initializer.append(
            numpy_helper.from_array(np.ascontiguousarray(weight), w_name)
        )
        out = node.output[0]
        has_bias = len(node.input) > 2 and node.input[2]
        mm_out = f"{out}_matmul" if has_bias else out
        stem = node.name or out
        nodes.append(
            helper.make_node("MatMul", [node.input[0], w_name], [mm_out], f"{stem}_MatMul")
        )
        if has_bias:
            nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [out], f"{stem}_Add"))
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {i for n in model.graph.node for i in n.input}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    onnx.checker.check_model(model)
    return count


def prepared_onnx(base: ModelHandle, ctx: BuildContext) -> Path:
    """The fp32 ONNX model with linear layers as MatMul and shapes inferred (built once)."""
    import onnx

    key = "prepared_onnx"
    if key not in ctx.memo:
        model = onnx.load(str(base.onnx()))
        gemm_to_matmul(model)
        model = onnx.shape_inference.infer_shapes(model)
        path = ctx.path("fp32-matmul")
        onnx.save(model, str(path))
        ctx.memo[key] = path
    return ctx.memo[key]


def weighted_matmuls(model: Any) -> list[Any]:
    """MatMul nodes whose second input is a constant 2-D weight (the quantisable ones)."""
    inits = {t.name: t for t in model.graph.initializer}
    return [
        n
        for n in model.graph.node
        if n.op_type == "MatMul" and n.input[1] in inits and len(inits[n.input[1]].dims) == 2
    ]


def _count_ops(path: Path, ops: tuple[str, ...]) -> int:
    import onnx

    return sum(n.op_type in ops for n in onnx.load(str(path)).graph.node)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the quantisers' progress prints and their advice to pre-process (it changes
    nothing here)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


# ------------------------------------------------------------------------- dynamic int8


@register_variant(
    "ort-int8-dynamic", "quantization", "dynamic int8, per-tensor weights", per_channel=False
)
@register_variant(
    "ort-int8-dynamic-per-channel",
    "quantization",
    "dynamic int8, per-channel weights (MatMul only)",
    per_channel=True,
)
def build_dynamic(
    base: ModelHandle,
    ctx: BuildContext,
    per_channel: bool = True,
    exclude: tuple[str, ...] = (),
    name: str | None = None,
) -> Variant:
    """ONNX Runtime ``quantize_dynamic``: int8 weights (QInt8), activations quantised per call."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = prepared_onnx(base, ctx)
    label = name or f"ort-int8-dynamic{'-per-channel' if per_channel else ''}"
    out = ctx.path(label)
    with _quiet():
        quantize_dynamic(
            str(src),
            str(out),
            op_types_to_quantize=["MatMul"],
            per_channel=per_channel,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(exclude),
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    quantised = _count_ops(out, ("MatMulInteger", "DynamicQuantizeMatMul"))
    if quantised == 0:
        raise VariantSkipped(
            f"{base.name} has no MatMul with constant weights to quantise dynamically"
        )
    params = {"per_channel": per_channel, "weight_type": "QInt8", "op_types": ["MatMul"]}
    meta = {"quantized_nodes": quantised, "fp32_nodes": list(exclude)}
    return make_variant(base, label, "quantization", params, out, metadata=meta)


# ------------------------------------------------------------------------- weight-only


@register_variant(
    "ort-int8-weight-only",
    "quantization",
    "MatMulNBits 8-bit weights",
    bits=8,
    block_size=128,
    accuracy_level=4,
)
@register_variant(
    "ort-int4-weight-only",
    "quantization",
    "MatMulNBits 4-bit weights",
    bits=4,
    block_size=32,
    accuracy_level=4,
)
def build_weight_only(
    base: ModelHandle,
    ctx: BuildContext,
    bits: int = 4,
    block_size: int = 32,
    accuracy_level: int = 4,
) -> Variant:
    """Weight-only blockwise quantisation of every MatMul to ``MatMulNBits`` (needs onnx-ir)."""
    import onnx

    if bits not in (4, 8):
        raise ConfigError(f"bits={bits} is not supported: use 4 or 8")
    if block_size < 16 or block_size & (block_size - 1):
        raise ConfigError(f"block_size={block_size} must be a power of 2 >= 16")
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    except ImportError as exc:  # pragma: no cover - depends on the ORT build
        raise VariantSkipped(f"this ONNX Runtime has no MatMulNBits quantiser ({exc})") from exc
    model = onnx.load(str(prepared_onnx(base, ctx)))
    with _quiet():
        quantizer = MatMulNBitsQuantizer(
            model,
            bits=bits,
            block_size=block_size,
            is_symmetric=True,
            accuracy_level=accuracy_level,
            op_types_to_quantize=("MatMul",),
        )
        quantizer.process()
    label = f"ort-int{bits}-weight-only"
    out = ctx.path(label)
    quantizer.model.save_model_to_file(str(out), use_external_data_format=False)
    quantised = _count_ops(out, ("MatMulNBits",))
    if quantised == 0:
        raise VariantSkipped(
            f"no MatMul of {base.name} could take {bits}-bit weights (MatMulNBits needs a "
            f"constant weight whose input size is at least {block_size})"
        )
    params = {"bits": bits, "block_size": block_size, "accuracy_level": accuracy_level}
    return make_variant(
        base, label, "quantization", params, out, metadata={"quantized_nodes": quantised}
    )


# ------------------------------------------------------------------------- mixed precision


@dataclass(frozen=True)
class LayerSensitivity:
    """How much int8 (activations per tensor, weights per channel) disturbs one MatMul's output
    on calibration data: ``relative_error = ||Y_int8 - Y|| / ||Y||`` (measured)."""

    node: str
    weight: str
    relative_error: float
    rows: int


def sensitivity_scan(
    onnx_path: Path, calibration: DataSet, max_rows: int = 4096, seed: int = 0
) -> list[LayerSensitivity]:
    """Per-layer int8 sensitivity of every weighted MatMul, most sensitive first.

    Runs the fp32 model once over the calibration data, capturing each MatMul's input, then
    simulates what dynamic int8 computes for that layer alone (activations asymmetric uint8 per
    tensor, weights symmetric int8 per output channel) and compares with the fp32 product.
    """
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    inits = {t.name: t for t in model.graph.initializer}
    nodes = weighted_matmuls(model)
    if not nodes:
        return []
    known = {o.name for o in model.graph.output}
    for act in dict.fromkeys(n.input[0] for n in nodes):
        if act not in known:
            model.graph.output.append(
                onnx.helper.make_tensor_value_info(act, onnx.TensorProto.FLOAT, None)
            )
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    acts: dict[str, list[np.ndarray]] = {}
    for feed in calibration_feeds(calibration, CALIBRATION_ITEMS):
        got = dict(zip(names, sess.run(names, feed)))
        for node in nodes:
            a = got[node.input[0]]
            acts.setdefault(node.input[0], []).append(a.reshape(-1, a.shape[-1]))
    rng = np.random.default_rng(seed)
    result = []
    for node in nodes:
        a = np.concatenate(acts[node.input[0]])
        if len(a) > max_rows:
            a = a[rng.choice(len(a), max_rows, replace=False)]
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        y = a @ w
        y_q = _fake_quant_activations(a) @ _fake_quant_weights(w)
        err = float(np.linalg.norm(y_q - y) / max(np.linalg.norm(y), 1e-12))
        result.append(LayerSensitivity(node.name, node.input[1], err, len(a)))
    return sorted(result, key=lambda s: s.relative_error, reverse=True)


def _fake_quant_activations(a: np.ndarray) -> np.ndarray:
    lo, hi = min(float(a.min()), 0.0), max(float(a.max()), 0.0)
    scale = (hi - lo) / 255 or 1.0
    zero = np.round(-lo / scale)
    q = np.clip(np.round(a / scale) + zero, 0, 255)
    return ((q - zero) * scale).astype(np.float32)


def _fake_quant_weights(w: np.ndarray) -> np.ndarray:
    scale = np.abs(w).max(axis=0, keepdims=True) / 127
    scale[scale == 0] = 1.0
    return (np.clip(np.round(w / scale), -127, 127) * scale).astype(np.float32)


@register_variant(
    "ort-int8-mixed",
    "quantization",
    "dynamic int8 per-channel, the most sensitive MatMuls kept fp32",
    keep_fraction=1 / 6,
)
def build_mixed(base: ModelHandle, ctx: BuildContext, keep_fraction: float = 1 / 6) -> Variant:
    """Dynamic int8 per-channel with the ``keep_fraction`` most sensitive MatMuls (at least
    one) left in fp32, chosen by :func:`sensitivity_scan` on the calibration data."""
    if not 0 < keep_fraction < 1:
        raise ConfigError(
            f"keep_fraction={keep_fraction} must lie in (0, 1): the share of MatMuls kept fp32"
        )
    scan = sensitivity_scan(prepared_onnx(base, ctx), _calibration(base, ctx))
    if len(scan) < 2:
        raise VariantSkipped(
            f"{base.name} has {len(scan)} quantisable MatMul(s): mixed precision needs two or more"
        )
    keep = max(1, math.ceil(keep_fraction * len(scan)))
    kept = [s.node for s in scan[:keep]]
    variant = build_dynamic(base, ctx, per_channel=True, exclude=tuple(kept), name="ort-int8-mixed")
    variant.family, variant.params = "quantization", {"keep_fraction": keep_fraction}
    variant.metadata.update(
        {
            "fp32_nodes": kept,
            "sensitivity": [
                {"node": s.node, "relative_error": round(s.relative_error, 6)} for s in scan
            ],
            "sensitivity_method": "measured: per-layer simulated int8 error on calibration data",
        }
    )
    return variant


# ------------------------------------------------------------------------- static QDQ


def calibration_feeds(data: DataSet, items: int = CALIBRATION_ITEMS) -> Iterator[dict]:
    """Feeds of at most ``items`` calibration examples, every feed of one shape: ONNX Runtime's
    histogram calibrators (Entropy, Percentile) stack each tensor across batches, so sentences
    are all padded to the longest and the batch size divides the number of items."""
    subset = data.head(items)
    n = len(subset)
    batch = max(d for d in range(1, 17) if n % d == 0)
    if isinstance(subset, SentenceSet):
        for _, feed in subset.fixed_length_batches(batch):
            yield feed
    else:
        for _, feed in subset.batches(batch):
            yield feed


def _calibration(base: ModelHandle, ctx: BuildContext) -> DataSet:
    data = ctx.data.calibration
    if isinstance(data, ArraySet):
        check_inputs(base, data.inputs, "calibration")
    elif not isinstance(data, SentenceSet):
        raise InputShapeError("calibration data must be an ArraySet or a SentenceSet")
    return data


@register_variant(
    "ort-int8-static-minmax", "quantization", "static QDQ int8, MinMax", method="minmax"
)
@register_variant(
    "ort-int8-static-minmax-per-channel",
    "quantization",
    "static QDQ int8, MinMax, per-channel weights",
    method="minmax",
    per_channel=True,
)
@register_variant(
    "ort-int8-static-entropy", "quantization", "static QDQ int8, Entropy", method="entropy"
)
@register_variant(
    "ort-int8-static-percentile",
    "quantization",
    "static QDQ int8, Percentile",
    method="percentile",
)
def build_static(
    base: ModelHandle, ctx: BuildContext, method: str = "minmax", per_channel: bool = False
) -> Variant:
    """Static int8 in QDQ format, activation ranges calibrated on the calibration data."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    if method not in CALIBRATORS:
        raise ConfigError(f"method={method!r} is not one of {', '.join(CALIBRATION_METHODS)}")
    data = _calibration(base, ctx)
    src = prepared_onnx(base, ctx)
    label = f"ort-int8-static-{method}{'-per-channel' if per_channel else ''}"
    out = ctx.path(label)
    with _quiet():
        ranges = calibration_ranges(src, data, method, ctx.path(f"{label}-ranges"))
        quantize_static(
            str(src),
            str(out),
            None,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(STATIC_OPS),
            per_channel=per_channel,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CALIBRATORS[method][0](),
            calibration_cache_path=str(ranges),
        )
    params = {
        "method": method,
        "per_channel": per_channel,
        "format": "QDQ",
        "op_types": list(STATIC_OPS),
        "calibrator": CALIBRATORS[method][1],
    }
    meta = {
        "calibration_items": min(len(data), CALIBRATION_ITEMS),
        "calibration_data": data.description,
        "quantized_nodes": _count_ops(out, ("QuantizeLinear",)),
    }
    return make_variant(base, label, "quantization", params, out, metadata=meta)


def _method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return getattr(CalibrationMethod, name)


#: ONNX Runtime calibrators and their settings. Entropy gets 512 histogram bins: with its default
#: (128 bins for 128 quantised bins) the only threshold it can pick is the full range, i.e. MinMax.
CALIBRATORS = {
    "minmax": (lambda: _method("MinMax"), {"symmetric": False}),
    "entropy": (
        lambda: _method("Entropy"),
        {"num_bins": 512, "num_quantized_bins": 128, "symmetric": False},
    ),
    "percentile": (
        lambda: _method("Percentile"),
        {"num_bins": 2048, "percentile": 99.999, "symmetric": True},
    ),
}


def calibration_ranges(src: Path, data: DataSet, method: str, cache: Path) -> Path:
    """Run one calibrator over the calibration data and save the activation ranges (ONNX
    Runtime's calibration cache, which ``quantize_static`` then reads)."""
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, save_tensors_data
    from onnxruntime.quantization.calibrate import create_calibrator

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = calibration_feeds(data)

        def get_next(self) -> dict | None:
            return next(self.feeds, None)

    make_method, settings = CALIBRATORS[method]
    cache = cache.with_suffix(".json")
    with tempfile.TemporaryDirectory(prefix="workbench-calib-") as tmp:
        calibrator = create_calibrator(
            src,
            list(STATIC_OPS),
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=make_method(),
            extra_options=settings,
        )
        calibrator.collect_data(Reader())
        save_tensors_data(calibrator.compute_data(), cache)
    return cache


# ------------------------------------------------------------------------- fp16 / bf16


class CastModule(nn.Module):
    """Run ``module`` in ``dtype``: float inputs cast in, outputs cast back to float32."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module.to(dtype)
        self.dtype = dtype

    def forward(self, *inputs: torch.Tensor) -> Any:
        cast = [x.to(self.dtype) if x.is_floating_point() else x for x in inputs]
        out = self.module(*cast)
        if isinstance(out, (tuple, list)):
            return type(out)(o.float() for o in out)
        return out.float()


def cpu_bf16_support() -> tuple[bool, str]:
    """Whether this CPU computes bf16 natively (``avx512_bf16`` or ``amx_bf16``), and why."""
    try:
        flags = set()
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        return False, "cannot read /proc/cpuinfo to check for bf16 instructions"
    native = sorted(flags & {"avx512_bf16", "amx_bf16"})
    if native:
        return True, f"CPU flags {', '.join(native)}"
    return False, (
        "this CPU has no native bf16 instructions (no avx512_bf16 or amx_bf16 flag): torch would "
        "emulate bf16 and run slower than fp32; use int8 variants here, or pass force=True"
    )


@register_variant("torch-bf16", "cast", "torch model cast to bfloat16 (CPU)", force=False)
def build_bf16(base: ModelHandle, ctx: BuildContext, force: bool = False) -> Variant:
    """``model.to(torch.bfloat16)`` behind float32 inputs and outputs, on CPUs with bf16."""
    ok, why = cpu_bf16_support()
    if not ok and not force:
        raise VariantSkipped(why)
    module = CastModule(torch_copy(base), torch.bfloat16)
    return make_variant(
        base, "torch-bf16", "cast", {"dtype": "bfloat16"}, module, metadata={"bf16_support": why}
    )


def _need_cuda() -> None:
    if not cuda_available():
        raise VariantSkipped(
            "fp16 variants run on an NVIDIA GPU and none is visible here; run the search on a "
            "machine with CUDA (torch and onnxruntime-gpu) to include them"
        )


@register_variant("torch-fp16-cuda", "cast", "torch model in float16 on the GPU")
def build_torch_fp16(base: ModelHandle, ctx: BuildContext) -> Variant:
    """``model.half()`` on CUDA behind float32 inputs and outputs."""
    _need_cuda()
    module = CastModule(torch_copy(base), torch.float16)
    return make_variant(
        base, "torch-fp16-cuda", "cast", {"dtype": "float16"}, module, device="cuda"
    )


@register_variant("ort-fp16-cuda", "cast", "ONNX model in float16 on the GPU (CUDA EP)")
def build_ort_fp16(base: ModelHandle, ctx: BuildContext) -> Variant:
    """The ONNX model converted to float16 (inputs and outputs kept float32), CUDA provider."""
    import onnx
    import onnxruntime as ort

    _need_cuda()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise VariantSkipped(
            "ONNX Runtime has no CUDAExecutionProvider here: install the 'gpu' extra "
            "(onnxruntime-gpu) to include the ORT fp16 variant"
        )
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(base.onnx())), keep_io_types=True)
    out = ctx.path("ort-fp16-cuda")
    onnx.save(model, str(out))
    return make_variant(base, "ort-fp16-cuda", "cast", {"dtype": "float16"}, out, device="cuda")
