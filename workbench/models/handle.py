"""The model handle: one model the workbench can run, from a ``torch.nn.Module`` with an example
input or from an ONNX file (``load_model`` in :mod:`workbench.models.load` resolves names too).

A handle knows its inputs (names, shapes, dtypes), makes example inputs for any batch size,
fingerprints the weights (sha256), and exports torch models to ONNX itself (dynamic batch axis),
checking the export's outputs against torch.

Example
-------
>>> from workbench.models import load_model
>>> handle = load_model("digits-mlp")            # trained on first use, then cached
>>> feed = handle.example_inputs(batch_size=4)
>>> feed["input"].shape
(4, 64)
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import InputShapeError, ModelLoadError
from workbench.paths import cache_dir

#: Size given to a dynamic, non-batch dimension of an ONNX input when the user gives no shape.
DEFAULT_DYNAMIC_DIM = 16
#: Tolerances for the ONNX export check against torch (float32).
EXPORT_ATOL, EXPORT_RTOL = 1e-4, 1e-3


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: ``shape`` uses ``None`` for a dynamic dimension."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str


@dataclass
class ModelHandle:
    """A model ready to be profiled on any backend.

    Attributes
    ----------
    name: display name (demo name, module class name, or ONNX file stem).
    source: ``"demo"``, ``"torch"`` or ``"onnx"``.
    inputs, outputs: tensor specs; dimension 0 is the batch.
    fingerprint: sha256 of the weights (torch) or of the ONNX bytes.
    metadata: JSON-able facts, e.g. held-out accuracy of a demo model (``accuracy_test``).
    assets: objects that travel with the model, e.g. a tokenizer.
    """

    name: str
    source: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    fingerprint: str
    make_inputs: Callable[[int], dict[str, np.ndarray]] = field(repr=False)
    torch_module: Any = field(default=None, repr=False)
    onnx_path: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    assets: dict[str, Any] = field(default_factory=dict, repr=False)

    def example_inputs(self, batch_size: int = 1) -> dict[str, np.ndarray]:
        """Input arrays for one call at this batch size, keyed by input name."""
        return self.make_inputs(batch_size)

    def onnx(self) -> Path:
        """Path of the model as ONNX, exporting (and checking) a torch model on first use."""
        if self.onnx_path is None:
            path = cache_dir() / "onnx" / f"{self.name}-{self.fingerprint[:16]}.onnx"
            if not path.exists():
                export_onnx(self, path)
            self.onnx_path = path
        return self.onnx_path

    @property
    def param_count(self) -> int:
        """Number of parameters (torch parameters, or ONNX initializer elements)."""
        if self.torch_module is not None:
            return int(sum(p.numel() for p in self.torch_module.parameters()))
        import onnx

        model = onnx.load(str(self.onnx_path), load_external_data=False)
        return int(sum(np.prod(t.dims, dtype=np.int64) for t in model.graph.initializer))

    @property
    def size_mb(self) -> float:
        """Size on disk of the ONNX file in MB (10^6 bytes)."""
        return self.onnx().stat().st_size / 1e6


def from_torch(
    module: Any, example_input: Any, name: str | None = None, metadata: dict[str, Any] | None = None
) -> ModelHandle:
    """Wrap a torch module; ``example_input`` fixes input names, shapes and dtypes."""
    import torch

    if example_input is None:
        raise InputShapeError(
            f"a torch module ({type(module).__name__}) needs an example input: pass "
            "example_input=torch.randn(1, ...) with the batch on dimension 0"
        )
    if isinstance(example_input, Mapping):
        named = dict(example_input)
    elif isinstance(example_input, (tuple, list)):
        named = {f"input_{i}": t for i, t in enumerate(example_input)}
    else:
        named = {"input": example_input}
    arrays = {k: _to_numpy(v) for k, v in named.items()}
    module = module.eval()
    try:
        with torch.inference_mode():
            out = module(*[torch.from_numpy(a) for a in arrays.values()])
    except Exception as exc:
        shapes = ", ".join(f"{k}{list(a.shape)}" for k, a in arrays.items())
        raise InputShapeError(
            f"the example input ({shapes}) does not fit {type(module).__name__}: "
            f"{_first_line(exc)}; pass an example_input of the shape the model's forward() takes"
        ) from exc
    outs = out if isinstance(out, (tuple, list)) else [out]
    out_names = ["output"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))]
    inputs = [TensorSpec(k, (None, *a.shape[1:]), str(a.dtype)) for k, a in arrays.items()]
    outputs = [
        TensorSpec(n, (None, *tuple(o.shape)[1:]), str(o.detach().numpy().dtype))
        for n, o in zip(out_names, outs)
    ]
    rows = {k: a[:1] for k, a in arrays.items()}
    return ModelHandle(
        name=name or type(module).__name__,
        source="torch",
        inputs=inputs,
        outputs=outputs,
        fingerprint=torch_fingerprint(module),
        make_inputs=lambda b: {k: np.repeat(r, b, axis=0) for k, r in rows.items()},
        torch_module=module,
        metadata=dict(metadata or {}),
    )


def load_onnx(path: Path, input_shapes: Mapping[str, Sequence[int]] | None = None) -> ModelHandle:
    """Read an ONNX file: input names, shapes and dtypes come from the graph."""
    import onnx

    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"ONNX file {path} does not exist; check the path")
    data = path.read_bytes()
    try:
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot read {path} as an ONNX model ({_first_line(exc)}); the file is corrupt or "
            "not ONNX: re-export it (e.g. torch.onnx.export) and try again"
        ) from exc
    init_names = {t.name for t in model.graph.initializer}
    inputs = [_spec(v) for v in model.graph.input if v.name not in init_names]
    outputs = [_spec(v) for v in model.graph.output]
    shapes = resolve_input_shapes(inputs, input_shapes or {}, path.name)
    rng = np.random.default_rng(0)

    def make_inputs(batch_size: int) -> dict[str, np.ndarray]:
        feed = {}
        for spec in inputs:
            shape = list(shapes[spec.name])
            if spec.shape and spec.shape[0] is None:
                shape[0] = batch_size
            elif batch_size != shape[0]:
                raise InputShapeError(
                    f"input {spec.name!r} of {path.name} has a fixed batch dimension {shape[0]}: "
                    f"profile it with batch size {shape[0]} or re-export with a dynamic batch axis"
                )
            feed[spec.name] = _random_array(rng, tuple(shape), spec.dtype)
        return feed

    return ModelHandle(
        name=path.stem,
        source="onnx",
        inputs=inputs,
        outputs=outputs,
        fingerprint=hashlib.sha256(data).hexdigest(),
        make_inputs=make_inputs,
        onnx_path=path,
    )


def resolve_input_shapes(
    inputs: list[TensorSpec], given: Mapping[str, Sequence[int]], model_name: str
) -> dict[str, tuple[int, ...]]:
    """Concrete shapes (batch first) for each input: the user's, or dynamic dims filled in.

    A dynamic batch dimension becomes 1 (the batch size replaces it per call); other dynamic
    dimensions become :data:`DEFAULT_DYNAMIC_DIM` with a warning saying how to choose them.
    """
    known = {s.name for s in inputs}
    for key in given:
        if key not in known:
            raise InputShapeError(
                f"{model_name} has no input named {key!r}; its inputs are {sorted(known)}"
            )
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in inputs:
        if spec.name in given:
            shape = tuple(int(d) for d in given[spec.name])
            if len(shape) != len(spec.shape) or any(
                fixed is not None and fixed != d for fixed, d in zip(spec.shape, shape)
            ):
                raise InputShapeError(
                    f"shape {list(shape)} does not fit input {spec.name!r} of {model_name}, which "
                    f"takes {_show(spec.shape)}; give a shape of that rank with the fixed sizes"
                )
            if any(d < 1 for d in shape):
                raise InputShapeError(f"shape {list(shape)} for {spec.name!r} has a size < 1")
            shapes[spec.name] = shape
            continue
        filled = []
        for axis, dim in enumerate(spec.shape):
            if dim is not None:
                filled.append(dim)
            elif axis == 0:
                filled.append(1)
            else:
                filled.append(DEFAULT_DYNAMIC_DIM)
                warnings.warn(
                    f"input {spec.name!r} of {model_name} has a dynamic dimension {axis}; using "
                    f"{DEFAULT_DYNAMIC_DIM}. Set it with input_shapes={{'{spec.name}': (...)}} "
                    f"or --input-shape {spec.name}=1x...",
                    stacklevel=3,
                )
        shapes[spec.name] = tuple(filled)
    return shapes


def export_onnx(handle: ModelHandle, path: Path, opset: int = 17) -> Path:
    """Export ``handle.torch_module`` to ``path`` with a dynamic batch axis, then check that
    ONNX Runtime's outputs match torch's (atol 1e-4, rtol 1e-3) on a batch of 3."""
    import torch

    module = handle.torch_module
    feed = handle.example_inputs(3)
    args = tuple(torch.from_numpy(a) for a in feed.values())
    dynamic = {s.name: {0: "batch"} for s in handle.inputs}
    for s in handle.inputs:
        for axis, dim in enumerate(s.shape[1:], start=1):
            if dim is None:
                dynamic[s.name][axis] = f"{s.name}_dim{axis}"
    dynamic.update({s.name: {0: "batch"} for s in handle.outputs})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(tmp),
            input_names=[s.name for s in handle.inputs],
            output_names=[s.name for s in handle.outputs],
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,
        )
    check_export(handle, tmp)
    tmp.replace(path)
    return path


def check_export(handle: ModelHandle, onnx_path: Path, batch_size: int = 3) -> float:
    """Largest absolute difference between torch and ONNX Runtime outputs; raises if too large."""
    import onnxruntime as ort
    import torch

    feed = handle.example_inputs(batch_size)
    with torch.inference_mode():
        ref = handle.torch_module(*[torch.from_numpy(a) for a in feed.values()])
    refs = [r.numpy() for r in (ref if isinstance(ref, (tuple, list)) else [ref])]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, feed)
    worst = 0.0
    for r, g in zip(refs, got):
        worst = max(worst, float(np.max(np.abs(r - g))) if r.size else 0.0)
        if not np.allclose(r, g, atol=EXPORT_ATOL, rtol=EXPORT_RTOL):
            raise ModelLoadError(
                f"the ONNX export of {handle.name} differs from torch (max abs error {worst:.3g}); "
                "the model may use an operator the exporter does not translate faithfully: "
                "export it yourself and profile the .onnx file"
            )
    return worst


def torch_fingerprint(module: Any) -> str:
    """sha256 over the module's state dict (names, dtypes, shapes and bytes, in key order)."""
    import torch

    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}:{t.dtype}:{tuple(tensor.shape)}".encode())
        if t.numel():
            digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


_ONNX_DTYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
    16: "bfloat16",
}


def _spec(value: Any) -> TensorSpec:
    t = value.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
    return TensorSpec(value.name, dims, _ONNX_DTYPES.get(t.elem_type, f"onnx:{t.elem_type}"))


def _random_array(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if dtype.startswith(("float", "bfloat")):
        return rng.standard_normal(shape).astype(np.float32 if dtype == "bfloat16" else dtype)
    if dtype == "bool":
        return np.ones(shape, dtype=bool)
    if dtype.startswith(("int", "uint")):
        return rng.integers(0, 10, size=shape).astype(dtype)
    raise InputShapeError(f"cannot make example data of ONNX type {dtype}")


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _show(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
