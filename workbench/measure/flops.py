"""Floating-point work per forward pass, counted two ways.

Convention (the one torch's ``FlopCounterMode`` uses): only matrix products and convolutions
count, one multiply-accumulate (MAC) = 2 FLOPs; bias additions, activations and other
element-wise operators are not counted.

- :func:`onnx_flops` reads the ONNX graph with shapes inferred for concrete input shapes
  (Conv, ConvTranspose, Gemm, MatMul and their int8 forms); a node whose shapes cannot be
  inferred counts 0, so the figure is a lower bound in that case.
- :func:`torch_flops` runs the module once under ``torch.utils.flop_counter.FlopCounterMode``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FlopCount:
    """FLOPs and MACs of one forward pass at a given batch size, and how they were counted."""

    flops: int
    macs: int
    method: str  # "onnx-graph" or "torch-flopcounter"
    batch_size: int

    @property
    def flops_per_item(self) -> float:
        return self.flops / self.batch_size


def onnx_flops(onnx_path: Path, feed: dict[str, np.ndarray]) -> FlopCount:
    """Count MACs of Conv/Gemm/MatMul in the graph for the shapes of ``feed``."""
    import onnx

    model = onnx.load(str(onnx_path))
    for value in model.graph.input:
        if value.name in feed:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, feed[value.name].shape):
                dim.ClearField("dim_param")
                dim.dim_value = int(size)
    inferred = _infer_shapes(model)
    shapes: dict[str, tuple[int, ...]] = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    for init in model.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    macs = sum(_node_macs(node, shapes) for node in inferred.graph.node)
    batch = next(iter(feed.values())).shape[0] if feed else 1
    return FlopCount(flops=2 * macs, macs=macs, method="onnx-graph", batch_size=batch)


def _infer_shapes(model: Any) -> Any:
    """ONNX Runtime's symbolic shape inference (resolves transformer reshapes), else onnx's own."""
    import onnx

    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        return SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception:  # some graphs defeat the symbolic pass; onnx's pass still helps
        return onnx.shape_inference.infer_shapes(model, data_prop=True)


def _node_macs(node: Any, shapes: dict[str, tuple[int, ...]]) -> int:
    op = node.op_type
    if op in ("Conv", "ConvInteger", "QLinearConv", "ConvTranspose"):
        x_name = node.input[0]
        w_name = node.input[3] if op == "QLinearConv" else node.input[1]
        out = shapes.get(node.output[0])
        w = shapes.get(w_name)
        x = shapes.get(x_name)
        if out is None or w is None or x is None:
            return 0
        if op == "ConvTranspose":
            # every input element meets every kernel element of its group's outputs
            return int(np.prod(x)) * int(np.prod(w[1:]))
        # out: [N, C_out, *spatial]; w: [C_out, C_in/groups, *kernel]
        return int(np.prod(out)) * int(np.prod(w[1:]))
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul", "MatMulNBits", "Gemm"):
        out = shapes.get(node.output[0])
        a_name = node.input[0]
        a = shapes.get(a_name)
        if out is None or a is None:
            return 0
        trans_a = any(att.name == "transA" and att.i for att in node.attribute)
        k = a[-2] if (op == "Gemm" and trans_a) else a[-1]
        return int(np.prod(out)) * int(k)
    return 0


def torch_flops(module: Any, feed: dict[str, np.ndarray]) -> FlopCount:
    """Count FLOPs by running ``module`` once under torch's ``FlopCounterMode``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in feed.values()]
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        module(*tensors)
    flops = int(counter.get_total_flops())
    batch = tensors[0].shape[0] if tensors else 1
    return FlopCount(flops=flops, macs=flops // 2, method="torch-flopcounter", batch_size=batch)
