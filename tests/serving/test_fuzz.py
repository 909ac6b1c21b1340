"""Fuzzing the two parsers that read untrusted bytes: the bundle loader (``manifest.json``,
``SHA256SUMS``, archives) and the V2 request decoder. Whatever the input, the only exception is
the project's own (:class:`BundleError`, :class:`ProtocolError`); anything else would crash
``python -m serving`` at start or answer a client 500.

Budget: ``FUZZ_EXAMPLES`` examples per property (200; ``WORKBENCH_RELIABILITY=full``: 5000).
"""

from __future__ import annotations

import copy
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from serving.manifest import (
    DATATYPES,
    BundleError,
    Manifest,
    ModelFile,
    TensorMeta,
    load_bundle,
    parse_manifest,
    unpack_archive,
    write_checksums,
)
from serving.protocol import NUMPY_DTYPES, ProtocolError, Signature, decode_infer

pytestmark = pytest.mark.reliability

FULL = os.environ.get("WORKBENCH_RELIABILITY") == "full"
FUZZ_EXAMPLES = 5000 if FULL else 200
fuzz = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)

# -- the bundle loader -------------------------------------------------------------------------

VALID_MANIFEST = Manifest(  # as JSON holds it: lists, not tuples
    name="m",
    models=(
        ModelFile(
            name="m",
            file="models/m.onnx",
            inputs=(TensorMeta("input", "FP32", (-1, 8), (1, 8)),),
            outputs=(TensorMeta("output", "FP32", (-1, 4)),),
        ),
    ),
    profile={"latency_ms_p99": 1.0, "energy_j_per_item": 0.1, "energy_method": "estimated"},
).to_dict()
VALID_MANIFEST = json.loads(json.dumps(VALID_MANIFEST))


def _paths(doc, prefix=()):
    """Every key path in a JSON document (so a mutation can hit any field, however deep)."""
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from _paths(value, (*prefix, index))


MANIFEST_PATHS = [p for p in _paths(VALID_MANIFEST) if p]


def test_the_manifest_that_the_mutations_start_from_is_valid():
    assert parse_manifest(VALID_MANIFEST).models[0].inputs[0].shape == (-1, 8)
    assert len(MANIFEST_PATHS) > 40  # every field, nested ones included, can be hit


@st.composite
def mutated_manifests(draw):
    doc = copy.deepcopy(VALID_MANIFEST)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(MANIFEST_PATHS))
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
    return doc


def _only_bundle_errors(call):
    try:
        return call()
    except BundleError:
        return None


@fuzz
@given(doc=json_values)
@example(doc={"schema_version": 1, "name": "m", "models": [{"file": "a.onnx", "inputs": "ab"}]})
@example(doc={**VALID_MANIFEST, "profile": [1, 2]})
@example(doc={**VALID_MANIFEST, "cost": {"usd_per_million": "cheap"}})
def test_any_json_document_gives_a_manifest_or_a_bundle_error(doc):
    _only_bundle_errors(lambda: parse_manifest(doc))


@fuzz
@given(doc=mutated_manifests())
def test_a_mutated_manifest_parses_or_gives_a_bundle_error(doc):
    manifest = _only_bundle_errors(lambda: parse_manifest(doc))
    if manifest is not None:  # what parses holds the types the runtime relies on
        _check_types(manifest)


def _check_types(m: Manifest) -> None:
    def number(value, minimum=0.0):
        return type(value) in (int, float) and value == value and value >= minimum

    assert isinstance(m.batching.enabled, bool) and isinstance(m.cache.enabled, bool)
    assert isinstance(m.threads.spinning, bool) and isinstance(m.profile, dict)
    assert m.slo.p99_ms is None or number(m.slo.p99_ms)
    for value in (m.cost.usd_per_million, m.cost.monthly_budget_usd, m.cost.instance_usd_per_h):
        assert value is None or number(value)
    for model in m.models:
        for meta in (*model.inputs, *model.outputs):
            assert meta.datatype in DATATYPES and all(type(d) is int for d in meta.shape)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory) -> Path:
    """A minimal bundle folder: manifest, one (fake) model file, checksums."""
    folder = tmp_path_factory.mktemp("fuzz") / "b"
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "m.onnx").write_bytes(b"\x08\x07onnx")
    (folder / "manifest.json").write_text(json.dumps(VALID_MANIFEST))
    write_checksums(folder)
    load_bundle(folder)
    return folder


@fuzz
@given(manifest=st.binary(max_size=300), sums=st.none() | st.binary(max_size=300))
@example(manifest=b"[" * 100_000, sums=None)
@example(manifest=b'{"a": 1}', sums=b"\xff\xfe" + b"0" * 64)
@example(manifest=b"{}", sums=b"0" * 64 + b"  ../../etc/passwd\n")
def test_random_bytes_in_manifest_or_checksums_give_a_bundle_error(tiny_bundle, manifest, sums):
    original = {name: (tiny_bundle / name).read_bytes() for name in ("manifest.json", "SHA256SUMS")}
    try:
        (tiny_bundle / "manifest.json").write_bytes(manifest)
        if sums is None:
            write_checksums(tiny_bundle)  # checksums agree: the manifest itself is parsed
        else:
            (tiny_bundle / "SHA256SUMS").write_bytes(sums)
        _only_bundle_errors(lambda: load_bundle(tiny_bundle))
    finally:
        for name, data in original.items():
            (tiny_bundle / name).write_bytes(data)


@pytest.fixture(scope="module")
def good_archive(tiny_bundle, tmp_path_factory) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(tiny_bundle, arcname="b")
    return buffer.getvalue()


@fuzz
@given(data=st.data())
def test_a_damaged_archive_gives_a_bundle_error(good_archive, tmp_path_factory, data):
    raw = bytearray(good_archive)
    how = data.draw(st.sampled_from(["truncate", "flip", "random"]))
    if how == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif how == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    else:
        raw = bytearray(data.draw(st.binary(max_size=600)))
    folder = tmp_path_factory.mktemp("unpack")
    (folder / "b.tar.gz").write_bytes(bytes(raw))
    bundle = _only_bundle_errors(lambda: unpack_archive(folder / "b.tar.gz", folder / "out"))
    if bundle is not None:
        _only_bundle_errors(lambda: load_bundle(bundle))
    assert {p.name for p in folder.iterdir()} <= {"b.tar.gz", "out"}  # nothing written beside


# -- the V2 request decoder --------------------------------------------------------------------

SIGNATURES = [
    Signature(
        inputs={"input": ("FP32", (-1, 4))}, outputs={"output": ("FP32", (-1, 2))}, name="lin"
    ),
    Signature(
        inputs={"ids": ("INT64", (-1, -1)), "mask": ("BOOL", (-1, -1))},
        outputs={"output": ("FP16", (-1, -1, 3)), "pooled": ("UINT8", (-1,))},
        name="two",
    ),
]
NAMES = ["input", "ids", "mask", "output", "pooled", ""]
datatypes = st.sampled_from([*NUMPY_DTYPES, "BYTES", "fp32", ""]) | scalars
shapes = st.lists(st.integers(-2, 6), max_size=4) | json_values
parameters = st.dictionaries(
    st.sampled_from(["binary_data_size", "binary_data", "binary_data_output", "x"]),
    st.integers(-4, 80) | st.floats(0, 80) | scalars | json_values,
    max_size=2,
)


@st.composite
def tensors(draw):
    item = {
        "name": draw(st.sampled_from(NAMES) | scalars),
        "datatype": draw(datatypes),
        "shape": draw(shapes),
    }
    if draw(st.booleans()):
        item["data"] = draw(
            st.lists(st.integers(-(2**65), 2**65) | st.floats() | st.booleans(), max_size=12)
            | json_values
        )
    if draw(st.booleans()):
        item["parameters"] = draw(parameters)
    return item


@st.composite
def requests(draw):
    doc = {"inputs": draw(st.lists(tensors(), max_size=3) | json_values)}
    outputs = st.lists(st.fixed_dictionaries({"name": st.sampled_from(NAMES) | scalars}))
    for key, values in (
        ("outputs", outputs | json_values),
        ("parameters", parameters | json_values),
        ("id", st.text(max_size=4) | scalars),
    ):
        if draw(st.booleans()):
            doc[key] = draw(values)
    head = json.dumps(doc).encode()
    tail = draw(st.binary(max_size=64))
    mode = draw(st.sampled_from(["json", "binary", "raw", "any"]))
    if mode == "json":
        return head, None
    if mode == "binary":
        return head + tail, len(head)
    if mode == "raw":
        return tail, 0
    return head + tail, draw(st.integers(-(2**40), 2**40))


@fuzz
@given(request=requests(), sig=st.sampled_from(SIGNATURES))
@example(
    request=(
        b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],'
        b'"outputs":[{"name":[1]}]}',
        None,
    ),
    sig=SIGNATURES[0],
)
@example(
    request=(
        b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32",'
        b'"parameters":{"binary_data_size":16}}]}' + bytes(16),
        -16,
    ),
    sig=SIGNATURES[0],
)
def test_any_request_decodes_to_the_signature_or_gives_a_protocol_error(request, sig):
    body, header_length = request
    try:
        decoded = decode_infer(body, header_length, sig)
    except ProtocolError as exc:
        assert 400 <= exc.status < 500 and str(exc)
        return
    assert set(decoded.inputs) == set(sig.inputs) and decoded.rows >= 1
    for name, array in decoded.inputs.items():
        datatype, shape = sig.inputs[name]
        assert array.dtype == NUMPY_DTYPES[datatype] and array.ndim == len(shape)
        assert array.shape[0] == decoded.rows
        assert all(w in (-1, d) for d, w in zip(array.shape, shape))
    assert set(decoded.outputs) <= set(sig.outputs)


@fuzz
@given(body=st.binary(max_size=200), header_length=st.none() | st.integers(-300, 300))
def test_random_bytes_give_a_protocol_error(body, header_length):
    for sig in SIGNATURES:
        try:
            decode_infer(body, header_length, sig)
        except ProtocolError as exc:
            assert 400 <= exc.status < 500


@fuzz
@given(rows=st.integers(1, 4), data=st.data())
def test_binary_tensors_round_trip_for_every_datatype(rows, data):
    """A well-formed binary request decodes to exactly the arrays that were sent."""
    datatype = data.draw(st.sampled_from(list(NUMPY_DTYPES)))
    dtype = NUMPY_DTYPES[datatype]
    sig = Signature(inputs={"x": (datatype, (-1, 3))}, outputs={"y": ("FP32", (-1,))})
    raw = data.draw(
        st.binary(min_size=rows * 3 * dtype.itemsize, max_size=rows * 3 * dtype.itemsize)
    )
    if datatype == "BOOL":
        raw = bytes(b & 1 for b in raw)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [rows, 3],
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    decoded = decode_infer(head + raw, len(head), sig)
    assert decoded.inputs["x"].tobytes() == raw and decoded.inputs["x"].shape == (rows, 3)
    np.testing.assert_array_equal(decoded.inputs["x"], np.frombuffer(raw, dtype).reshape(rows, 3))
