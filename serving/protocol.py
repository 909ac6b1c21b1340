"""Open Inference Protocol (V2) REST codec: JSON tensors and Triton's binary tensor extension.

:func:`decode_infer` turns a request body into named numpy arrays checked against the model's
signature; :func:`encode_infer` turns outputs into a response body. Problems raise
:class:`ProtocolError` with an HTTP status and a message naming the tensor and the fix; the app
sends it as ``{"error": "..."}``.

Binary extension: the body is a JSON header of ``Inference-Header-Content-Length`` bytes followed
by raw little-endian tensors in input order (``parameters.binary_data_size`` each). A header
length equal to the whole body means plain JSON (perf_analyzer sends the header in JSON mode too);
a length of 0 is "raw" mode: the body is the single input's bytes, one row.

Example
-------
>>> sig = Signature(inputs={"x": ("FP32", (-1, 2))}, outputs={"y": ("FP32", (-1, 1))})
>>> req = decode_infer(b'{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32",'
...                    b'"data":[1,2]}]}', None, sig)
>>> req.inputs["x"].tolist()
[[1.0, 2.0]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

#: V2 datatype -> numpy dtype (little-endian, as the binary extension requires).
NUMPY_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}


class ProtocolError(Exception):
    """A request the server refuses: ``status`` (400, 404, 413, 503 ...) and a message."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        retry_after_s: int | None = None,
        allow: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s
        self.allow = allow  # 405: the methods the route takes (the Allow header)


@dataclass(frozen=True)
class Signature:
    """Inputs and outputs of a served model: name -> (V2 datatype, shape with -1 for variable)."""

    inputs: dict[str, tuple[str, tuple[int, ...]]]
    outputs: dict[str, tuple[str, tuple[int, ...]]]
    name: str = "model"


@dataclass
class InferRequest:
    """A decoded request: inputs (all with the same number of rows), the outputs asked for
    (all when empty), and which outputs go back as binary data."""

    inputs: dict[str, np.ndarray]
    rows: int
    id: str | None = None
    outputs: list[str] = field(default_factory=list)
    binary_outputs: set[str] = field(default_factory=set)
    binary_all: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def decode_infer(body: bytes, header_length: int | None, sig: Signature) -> InferRequest:
    """Decode an infer request body; ``header_length`` is ``Inference-Header-Content-Length``."""
    if header_length is not None and header_length < 0:
        raise ProtocolError(
            f"Inference-Header-Content-Length is {header_length}; send the JSON header's length "
            "(0 for a raw body)"
        )
    if header_length == 0:
        return _decode_raw(body, sig)
    binary = header_length is not None and header_length < len(body)
    if header_length is not None and header_length > len(body):
        raise ProtocolError(
            f"Inference-Header-Content-Length is {header_length} but the body has only "
            f"{len(body)} bytes; send the JSON header's length"
        )
    head = body[:header_length] if binary else body
    try:
        doc = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ProtocolError("request body must be a JSON object with an 'inputs' list")
    items = doc.get("inputs")
    if not isinstance(items, list) or not items:
        raise ProtocolError("request needs a non-empty 'inputs' list")
    offset = header_length if binary else 0
    inputs: dict[str, np.ndarray] = {}
    for item in items:
        if not isinstance(item, dict):
            raise ProtocolError(
                "each entry of 'inputs' must be an object with name, shape, datatype"
            )
        name, array, used = _decode_tensor(item, sig, body, offset)
        if name in inputs:
            raise ProtocolError(f"input {name!r} appears twice; send each input once")
        inputs[name] = array
        offset += used
    if binary and offset != len(body):
        raise ProtocolError(
            f"binary data holds {len(body) - header_length} bytes but the inputs' "
            f"binary_data_size add up to {offset - header_length}; they must match"
        )
    rows = _check_inputs(inputs, sig)
    request = InferRequest(inputs=inputs, rows=rows, id=_request_id(doc.get("id")))
    params = _parameters(doc, "the request")
    if params:
        request.parameters = params
        request.binary_all = params.get("binary_data_output") is True
    _decode_outputs(doc.get("outputs"), sig, request)
    return request


def _decode_tensor(
    item: dict[str, Any], sig: Signature, body: bytes, offset: int
) -> tuple[str, np.ndarray, int]:
    name = item.get("name")
    if not isinstance(name, str):
        raise ProtocolError("an input has no 'name'; each input needs name, shape and datatype")
    if name not in sig.inputs:
        raise ProtocolError(
            f"model {sig.name!r} has no input {name!r}; its inputs are {sorted(sig.inputs)}"
        )
    want_type, want_shape = sig.inputs[name]
    datatype = item.get("datatype")
    if datatype != want_type:
        raise ProtocolError(
            f"input {name!r} has datatype {datatype!r}; model {sig.name!r} takes {want_type}"
        )
    shape = item.get("shape")
    if not _shape_fits(shape, want_shape):
        if not isinstance(shape, list) or any(type(d) is not int or d < 0 for d in shape):
            raise ProtocolError(f"input {name!r} needs 'shape', a list of whole numbers >= 0")
        raise ProtocolError(
            f"input {name!r} has shape {shape}; model {sig.name!r} takes {list(want_shape)} "
            "(-1: any size)"
        )
    dtype = NUMPY_DTYPES[datatype]
    count = math.prod(shape)
    size = _parameters(item, f"input {name!r}").get("binary_data_size")
    if size is not None:
        if type(size) is not int or size != count * dtype.itemsize:
            raise ProtocolError(
                f"input {name!r} of shape {shape} and datatype {datatype} needs "
                f"{count * dtype.itemsize} bytes, but binary_data_size is {size}"
            )
        if offset + size > len(body):
            raise ProtocolError(
                f"input {name!r}: binary_data_size is {size} but only {len(body) - offset} "
                "bytes of binary data are left in the body"
            )
        array = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
        return name, array.reshape(shape), size
    data = item.get("data")
    if data is None:
        raise ProtocolError(f"input {name!r} has neither 'data' nor binary_data_size")
    try:
        array = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ProtocolError(f"input {name!r}: data is not a {datatype} array ({exc})") from None
    if array.size != count:
        raise ProtocolError(
            f"input {name!r} has shape {shape} ({count} values) but its data holds {array.size}"
        )
    return name, array.reshape(shape), 0


def _shape_fits(shape: Any, want: tuple[int, ...]) -> bool:
    if type(shape) is not list or len(shape) != len(want):
        return False
    return all(type(d) is int and d >= 0 and w in (-1, d) for d, w in zip(shape, want, strict=True))


def _decode_raw(body: bytes, sig: Signature) -> InferRequest:
    if len(sig.inputs) != 1:
        raise ProtocolError(
            f"raw binary requests (Inference-Header-Content-Length: 0) need a model with one "
            f"input; {sig.name!r} takes {sorted(sig.inputs)}"
        )
    ((name, (datatype, shape)),) = sig.inputs.items()
    row_shape = (1, *shape[1:])
    if any(d < 0 for d in row_shape):
        raise ProtocolError(
            f"raw binary requests need fixed input dimensions; {name!r} has {shape}"
        )
    dtype = NUMPY_DTYPES[datatype]
    need = math.prod(row_shape) * dtype.itemsize
    if len(body) != need:
        raise ProtocolError(f"raw binary body has {len(body)} bytes; one row of {name!r} is {need}")
    return InferRequest(inputs={name: np.frombuffer(body, dtype=dtype).reshape(row_shape)}, rows=1)


def _check_inputs(inputs: dict[str, np.ndarray], sig: Signature) -> int:
    missing = [n for n in sig.inputs if n not in inputs]
    if missing:
        raise ProtocolError(
            f"input {missing[0]!r} is missing; model {sig.name!r} takes {list(sig.inputs)}"
        )
    rows = {a.shape[0] if a.ndim else 1 for a in inputs.values()}
    if len(rows) != 1:
        shapes = {n: list(a.shape) for n, a in inputs.items()}
        raise ProtocolError(f"inputs disagree on the batch size (dimension 0): {shapes}")
    (n,) = rows
    if n < 1:
        raise ProtocolError("inputs hold 0 rows; send at least one")
    return n


def _decode_outputs(items: Any, sig: Signature, request: InferRequest) -> None:
    if items is None:
        return
    if not isinstance(items, list):
        raise ProtocolError("'outputs' must be a list of objects with a 'name'")
    for item in items:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or name not in sig.outputs:
            raise ProtocolError(
                f"model {sig.name!r} has no output {name!r}; its outputs are {sorted(sig.outputs)}"
            )
        request.outputs.append(name)
        if _parameters(item, f"output {name!r}").get("binary_data") is True:
            request.binary_outputs.add(name)


def _parameters(doc: dict[str, Any], where: str) -> dict[str, Any]:
    """The ``parameters`` object of a request, input or output: values are strings, numbers or
    booleans (V2)."""
    params = doc.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict) or not all(
        isinstance(v, (str, int, float, bool)) for v in params.values()
    ):
        raise ProtocolError(
            f"'parameters' of {where} must be an object whose values are strings, numbers or "
            f"booleans, not {params!r}"
        )
    return params


def _request_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"request 'id' must be a string, not {value!r}")
    return value


def encode_infer(
    model: str,
    version: str,
    request: InferRequest,
    outputs: dict[str, np.ndarray],
    sig: Signature,
) -> tuple[bytes, int | None]:
    """Response body, and the JSON header's length when the body carries binary data."""
    names = request.outputs or list(sig.outputs)
    binary_parts: list[bytes] = []
    entries = []
    for name in names:
        array = outputs[name]
        datatype = sig.outputs[name][0]
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if request.binary_all or name in request.binary_outputs:
            raw = np.ascontiguousarray(array, dtype=NUMPY_DTYPES[datatype]).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            binary_parts.append(raw)
        else:
            # No 'parameters' in JSON outputs: perf_analyzer reads any as binary metadata.
            entry["data"] = _json_data(array)
        entries.append(entry)
    doc: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": entries}
    if request.id is not None:
        doc["id"] = request.id
    head = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not binary_parts:
        return head, None
    return b"".join([head, *binary_parts]), len(head)


def _json_data(array: np.ndarray) -> Any:
    flat = np.ascontiguousarray(array).reshape(-1)
    if flat.dtype == np.float16:  # orjson serialises no float16
        return flat.astype(np.float32)
    return flat
