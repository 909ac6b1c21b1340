import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from workbench.errors import InputShapeError, ModelLoadError, UnknownModelError
from workbench.models import load_model
from workbench.models.datasets import digits_split
from workbench.models.handle import DEFAULT_DYNAMIC_DIM, check_export
from workbench.models.zoo import digits_inputs
from workbench.paths import cache_dir


@pytest.mark.parametrize("name", ["digits-cnn", "digits-mlp"])
def test_digits_models_are_trained_cached_and_accurate(name):
    first = load_model(name)
    weights = next((cache_dir() / "demo").glob(f"{name}-*.pt"))
    mtime = weights.stat().st_mtime_ns
    again = load_model(name)
    assert weights.stat().st_mtime_ns == mtime, "second load must read the cache, not retrain"
    assert again.fingerprint == first.fingerprint
    # held-out accuracy, recomputed here from the test split rather than trusted from metadata
    split = digits_split(0)
    with torch.inference_mode():
        logits = again.torch_module(torch.from_numpy(digits_inputs(name, split.X_test)))
    accuracy = float((logits.argmax(1).numpy() == split.y_test).mean())
    assert accuracy == pytest.approx(first.metadata["accuracy_test"])
    assert accuracy > 0.93


def test_digits_split_is_deterministic_and_disjoint():
    a, b = digits_split(0), digits_split(0)
    assert np.array_equal(a.X_test, b.X_test)
    rows = {r.tobytes() for r in a.X_train}
    assert sum(r.tobytes() in rows for r in a.X_test) < 5  # digits has a few duplicate images
    assert len(a.y_train) + len(a.y_val) + len(a.y_test) == 1797


@pytest.mark.parametrize("name", ["digits-cnn", "digits-mlp", "minilm"])
def test_onnx_export_matches_torch(name):
    shapes = {"input_ids": (1, 24)} if name == "minilm" else None
    handle = load_model(name, input_shapes=shapes)
    path = handle.onnx()
    assert check_export(handle, path, batch_size=5) < 1e-4
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = handle.example_inputs(7)  # a batch size the export never saw
    with torch.inference_mode():
        ref = handle.torch_module(*[torch.from_numpy(a) for a in feed.values()]).numpy()
    np.testing.assert_allclose(sess.run(None, feed)[0], ref, atol=1e-4, rtol=1e-3)


def test_minilm_embeddings_are_normalised_sentence_vectors():
    handle = load_model("minilm", input_shapes={"input_ids": (1, 32)})
    feed = handle.example_inputs(3)
    assert feed["input_ids"].shape == (3, 32) and feed["input_ids"].dtype == np.int64
    with torch.inference_mode():
        emb = handle.torch_module(*[torch.from_numpy(a) for a in feed.values()]).numpy()
    assert emb.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_torch_module_with_example_input():
    module = nn.Sequential(nn.Linear(6, 3))
    handle = load_model(module, example_input=torch.randn(2, 6), name="tiny")
    assert handle.name == "tiny" and handle.inputs[0].shape == (None, 6)
    assert handle.example_inputs(5)["input"].shape == (5, 6)
    assert handle.param_count == 21


def test_torch_module_without_example_or_with_wrong_one():
    module = nn.Linear(6, 3)
    with pytest.raises(InputShapeError, match="example_input"):
        load_model(module)
    with pytest.raises(InputShapeError, match=r"does not fit Linear"):
        load_model(module, example_input=torch.randn(1, 7))


def test_unknown_model_lists_the_demo_models():
    with pytest.raises(UnknownModelError, match="digits-cnn, digits-mlp, minilm"):
        load_model("resnet-9000")


def test_missing_and_corrupt_onnx_files(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "absent.onnx")
    bad = tmp_path / "corrupt.onnx"
    good = load_model("digits-mlp").onnx().read_bytes()
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelLoadError, match="corrupt or not ONNX"):
        load_model(bad)


def _dynamic_onnx(tmp_path):
    """A user ONNX file with a dynamic batch and a dynamic sequence dimension."""
    module = nn.Linear(4, 2)
    path = tmp_path / "user.onnx"
    torch.onnx.export(
        module,
        (torch.randn(1, 3, 4),),
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "b", 1: "seq"}},
        dynamo=False,
    )
    return path


def test_onnx_file_reads_inputs_and_fills_dynamic_dims_with_a_warning(tmp_path):
    path = _dynamic_onnx(tmp_path)
    with pytest.warns(UserWarning, match="dynamic dimension 1"):
        handle = load_model(path)
    assert handle.source == "onnx" and handle.inputs[0].shape == (None, None, 4)
    assert handle.inputs[0].dtype == "float32"
    assert handle.example_inputs(3)["x"].shape == (3, DEFAULT_DYNAMIC_DIM, 4)
    given = load_model(path, input_shapes={"x": (1, 9, 4)})
    assert given.example_inputs(2)["x"].shape == (2, 9, 4)
    assert handle.fingerprint == given.fingerprint and len(handle.fingerprint) == 64


def test_onnx_input_shapes_that_do_not_fit(tmp_path):
    path = _dynamic_onnx(tmp_path)
    with pytest.raises(InputShapeError, match="takes \\[\\?, \\?, 4\\]"):
        load_model(path, input_shapes={"x": (1, 9, 5)})
    with pytest.raises(InputShapeError, match=r"shape \[1, 9\] does not fit input 'x'"):
        load_model(path, input_shapes={"x": (1, 9)})
    with pytest.raises(InputShapeError, match="no input named 'z'"):
        load_model(path, input_shapes={"z": (1, 9, 4)})


def test_fixed_batch_onnx_refuses_other_batch_sizes(tmp_path):
    path = tmp_path / "fixed.onnx"
    torch.onnx.export(
        nn.Linear(4, 2), (torch.randn(1, 4),), str(path), input_names=["x"], dynamo=False
    )
    handle = load_model(path)
    assert handle.example_inputs(1)["x"].shape == (1, 4)
    with pytest.raises(InputShapeError, match="fixed batch dimension 1"):
        handle.example_inputs(4)
    assert onnx.load(str(path)).graph.input[0].name == "x"
