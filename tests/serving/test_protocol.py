"""The V2 codec on its own: JSON and binary tensors in, JSON and binary tensors out."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest

from serving.protocol import ProtocolError, Signature, decode_infer, encode_infer

SIG = Signature(
    inputs={"x": ("FP32", (-1, 3)), "mask": ("BOOL", (-1, 3))},
    outputs={"y": ("FP32", (-1, 2)), "ids": ("INT64", (-1,))},
    name="m",
)


def _binary(doc: dict, *arrays: np.ndarray) -> tuple[bytes, int]:
    head = orjson.dumps(doc)
    return head + b"".join(a.tobytes() for a in arrays), len(head)


def test_json_flat_and_nested_data_decode_to_the_same_arrays():
    x = {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}
    mask = {
        "name": "mask",
        "shape": [2, 3],
        "datatype": "BOOL",
        "data": [True, False, True, True, True, False],
    }
    flat = {"inputs": [x, mask], "id": "7", "parameters": {"binary_data_output": True}}
    nested = json.loads(json.dumps(flat))
    nested["inputs"][0]["data"] = [[1, 2, 3], [4, 5, 6]]
    a = decode_infer(json.dumps(flat).encode(), None, SIG)
    b = decode_infer(json.dumps(nested).encode(), None, SIG)
    assert a.rows == 2 and a.id == "7" and a.binary_all
    np.testing.assert_array_equal(a.inputs["x"], b.inputs["x"])
    assert a.inputs["x"].dtype == np.float32 and a.inputs["mask"].dtype == np.bool_


def test_binary_tensors_decode_in_input_order():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    mask = np.array([[1, 0, 1], [0, 1, 0]], dtype=bool)
    doc = {
        "inputs": [
            {
                "name": "x",
                "shape": [2, 3],
                "datatype": "FP32",
                "parameters": {"binary_data_size": 24},
            },
            {
                "name": "mask",
                "shape": [2, 3],
                "datatype": "BOOL",
                "parameters": {"binary_data_size": 6},
            },
        ],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
    }
    body, length = _binary(doc, x, mask)
    req = decode_infer(body, length, SIG)
    np.testing.assert_array_equal(req.inputs["x"], x)
    np.testing.assert_array_equal(req.inputs["mask"], mask)
    assert req.outputs == ["y"] and req.binary_outputs == {"y"}


def test_a_header_length_equal_to_the_body_means_plain_json():
    body = orjson.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
                {"name": "mask", "shape": [1, 3], "datatype": "BOOL", "data": [1, 1, 1]},
            ]
        }
    )
    assert decode_infer(body, len(body), SIG).rows == 1  # perf_analyzer sends it in JSON mode


def test_raw_binary_mode_is_one_row_of_the_only_input():
    sig = Signature(inputs={"x": ("FP32", (-1, 3))}, outputs={"y": ("FP32", (-1, 2))})
    req = decode_infer(np.ones(3, np.float32).tobytes(), 0, sig)
    assert req.inputs["x"].shape == (1, 3)
    with pytest.raises(ProtocolError, match="one row of 'x' is 12"):
        decode_infer(b"\x00" * 8, 0, sig)


@pytest.mark.parametrize(
    ("inputs", "phrase"),
    [
        (
            [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
            "input 'mask' is missing",
        ),
        (
            [
                {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
                {"name": "mask", "shape": [2, 3], "datatype": "BOOL", "data": [1] * 6},
            ],
            "disagree on the batch size",
        ),
        (
            [
                {"name": "x", "shape": [0, 3], "datatype": "FP32", "data": []},
                {"name": "mask", "shape": [0, 3], "datatype": "BOOL", "data": []},
            ],
            "0 rows",
        ),
        ([{"name": "x", "shape": [1, -3], "datatype": "FP32", "data": [1]}], "whole numbers >= 0"),
        ([{"name": "x", "shape": [1, 3], "datatype": "FP32"}], "neither 'data' nor"),
        (
            [
                {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
                {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
            ],
            "appears twice",
        ),
        ([{"shape": [1, 3]}], "has no 'name'"),
        (["x"], "must be an object"),
    ],
    ids=["missing", "batch", "zero rows", "negative", "no data", "twice", "no name", "not dict"],
)
def test_bad_requests_name_the_problem(inputs, phrase):
    with pytest.raises(ProtocolError, match=phrase) as err:
        decode_infer(orjson.dumps({"inputs": inputs}), None, SIG)
    assert err.value.status == 400


def test_request_id_must_be_a_string():
    body = {
        "id": 5,
        "inputs": [
            {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
            {"name": "mask", "shape": [1, 3], "datatype": "BOOL", "data": [1, 1, 1]},
        ],
    }
    with pytest.raises(ProtocolError, match="'id' must be a string"):
        decode_infer(orjson.dumps(body), None, SIG)


def test_header_longer_than_body_is_refused():
    with pytest.raises(ProtocolError, match="Inference-Header-Content-Length is 99"):
        decode_infer(b"{}", 99, SIG)


def _request(**kwargs):
    body = {
        "inputs": [
            {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
            {"name": "mask", "shape": [1, 3], "datatype": "BOOL", "data": [1, 1, 1]},
        ],
        **kwargs,
    }
    return decode_infer(orjson.dumps(body), None, SIG)


def test_json_response_has_flat_data_and_no_parameters():
    outputs = {"y": np.array([[1.5, 2.5]], np.float32), "ids": np.array([3], np.int64)}
    body, length = encode_infer("m", "1", _request(id="a"), outputs, SIG)
    assert length is None
    doc = json.loads(body)
    assert doc["id"] == "a" and doc["model_name"] == "m" and doc["model_version"] == "1"
    assert doc["outputs"] == [
        {"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [1.5, 2.5]},
        {"name": "ids", "datatype": "INT64", "shape": [1], "data": [3]},
    ]


def test_binary_response_carries_sizes_and_bytes_in_order():
    outputs = {"y": np.array([[1.5, 2.5]], np.float32), "ids": np.array([3], np.int64)}
    req = _request(outputs=[{"name": "ids", "parameters": {"binary_data": True}}, {"name": "y"}])
    body, length = encode_infer("m", "1", req, outputs, SIG)
    head = json.loads(body[:length])
    assert [o["name"] for o in head["outputs"]] == ["ids", "y"]
    assert head["outputs"][0]["parameters"] == {"binary_data_size": 8}
    assert head["outputs"][1]["data"] == [1.5, 2.5]
    assert np.frombuffer(body[length:], np.int64).tolist() == [3]
