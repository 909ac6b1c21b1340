import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from workbench.compress.prune import check_sparsity, prune_ffn_neurons, structured_prune
from workbench.compress.quality import evaluate, predict, task_data
from workbench.compress.registry import BuildContext, VariantSkipped, build_variant, get_spec
from workbench.errors import ConfigError
from workbench.measure.backends import make_runner
from workbench.measure.flops import onnx_flops, torch_flops
from workbench.models import load_model
from workbench.models.zoo import SentenceEncoder


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    handle = load_model("digits-cnn")
    data = task_data(handle)
    base = dataclasses.replace(handle, make_inputs=data.held_out.example_feed)
    ctx = BuildContext(data, tmp_path_factory.mktemp("variants"))
    reference = predict(make_runner(base, "torch"), data.held_out)
    return base, data, ctx, reference


def _quality(variant, data, reference):
    runner = make_runner(variant.handle, variant.backend)
    try:
        return evaluate(predict(runner, data.held_out), reference, data)
    finally:
        runner.close()


def _cnn_params(c1, c2, h):
    return (9 * c1 + c1) + (9 * c1 * c2 + c2) + (16 * c2 * h + h) + (10 * h + 10)


def _cnn_flops(c1, c2, h):
    return 2 * (64 * 9 * c1 + 64 * 9 * c1 * c2 + 16 * c2 * h + 10 * h)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, "half", True])
def test_sparsity_outside_zero_one_is_refused(bad, cnn):
    with pytest.raises(ConfigError, match=r"sparsity"):
        check_sparsity(bad)
    base, _, ctx, _ = cnn
    with pytest.raises(ConfigError, match=r"sparsity"):
        get_spec("torch-prune-structured").with_params(sparsity=bad)(base, ctx)


def test_structured_pruning_cuts_parameters_and_flops_by_the_expected_fraction(cnn):
    base, data, ctx, reference = cnn
    one = {"input": data.held_out.example_feed(1)["input"]}
    teacher_flops = torch_flops(base.torch_module, one).flops
    assert teacher_flops == _cnn_flops(16, 32, 64)
    variant = build_variant("torch-prune-structured", base, ctx)  # sparsity 0.5
    module = variant.model
    assert variant.metadata["kept_per_layer"] == [8, 16, 32]  # half of 16, 32, 64
    assert (module[0].out_channels, module[2].in_channels, module[2].out_channels) == (8, 8, 16)
    assert (module[6].in_features, module[6].out_features, module[8].in_features) == (256, 32, 32)
    assert not any("mask" in name for name, _ in module.named_buffers())  # removed, not masked
    params = sum(p.numel() for p in module.parameters())
    assert params == _cnn_params(8, 16, 32) == variant.metadata["params_after"]
    assert variant.metadata["params_before"] == _cnn_params(16, 32, 64)
    flops = torch_flops(module, one).flops
    assert flops == _cnn_flops(8, 16, 32)
    # inner layers shrink on both sides: about (1 - s)^2 of the work remains
    assert flops / teacher_flops == pytest.approx(0.257, abs=0.001)
    assert params / variant.metadata["params_before"] == pytest.approx(0.256, abs=0.001)
    assert variant.size_mb < 0.3 * base.size_mb
    quality = _quality(variant, data, reference)
    assert quality.items == len(data.held_out) and quality.drop < 0.03
    exported = build_variant("ort-prune-structured", base, ctx)  # same fine-tuned weights
    assert onnx_flops(exported.model, one).flops == flops
    assert _quality(exported, data, reference).accuracy == pytest.approx(quality.accuracy)


def test_structured_pruning_of_an_mlp_and_of_encoder_neurons():
    mlp = nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)
    )
    what, kept = structured_prune(mlp, 0.25)
    assert what.startswith("channels")
    assert kept == [96, 48] and mlp[2].in_features == 96 and mlp[4].in_features == 48
    assert mlp(torch.zeros(2, 64)).shape == (2, 10)

    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    encoder = SentenceEncoder(transformers.BertModel(config)).eval()
    before = sum(p.numel() for p in encoder.parameters())
    ids = torch.randint(0, 100, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    assert prune_ffn_neurons(encoder, 0.25) == [48, 48]
    assert before - sum(p.numel() for p in encoder.parameters()) == 2 * 16 * (32 + 1 + 32)
    assert encoder(ids, mask).shape == (3, 32)


def test_structured_pruning_skips_an_architecture_it_does_not_know(cnn):
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)

        def forward(self, x):
            return x + self.a(x)

    with pytest.raises(VariantSkipped, match="does not know Residual"):
        structured_prune(Residual(), 0.5)
    with pytest.raises(VariantSkipped, match="through LayerNorm"):
        structured_prune(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2)), 0.5)


def test_magnitude_pruning_zeroes_the_share_asked_and_is_measured(cnn):
    base, data, ctx, reference = cnn
    spec = get_spec("torch-prune-magnitude").with_params(sparsity=0.7, epochs=2)
    variant = build_variant(spec, base, ctx)
    weights = [m.weight for m in variant.model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    zeros = sum(int((w == 0).sum()) for w in weights)
    total = sum(w.numel() for w in weights)
    assert zeros / total == pytest.approx(0.7, abs=0.002)
    assert variant.metadata["sparsity_measured"] == pytest.approx(zeros / total)
    assert variant.metadata["storage"] == "dense"
    assert variant.size_mb == pytest.approx(base.size_mb, rel=0.1)  # zeros are still stored
    assert variant.params == {"sparsity": 0.7, "epochs": 2}
    quality = _quality(variant, data, reference)
    assert quality.items == len(data.held_out) and quality.drop < 0.05


def test_torch_dynamic_int8_quantises_linear_layers(cnn):
    base, data, ctx, reference = cnn
    variant = build_variant("torch-int8-dynamic", base, ctx)
    kinds = {type(m).__module__ for m in variant.model.modules()}
    assert any("quantized" in k for k in kinds)
    assert isinstance(variant.model[0], nn.Conv2d)  # convolutions stay fp32
    assert variant.size_mb < 0.5 * base.size_mb and variant.params_count > 0
    quality = _quality(variant, data, reference)
    assert quality.drop < 0.02 and quality.max_abs_error > 0
    assert np.isfinite(quality.max_abs_error)
