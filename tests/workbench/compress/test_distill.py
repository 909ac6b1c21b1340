import dataclasses

import pytest
import torch
from torch import nn

from workbench.compress.distill import digits_student, encoder_student, make_student
from workbench.compress.quality import evaluate, predict, task_data
from workbench.compress.registry import BuildContext, VariantSkipped, build_variant, get_spec
from workbench.errors import ConfigError
from workbench.measure.backends import make_runner
from workbench.models import load_model
from workbench.models.zoo import SentenceEncoder

#: The stated bound: a student within 2 accuracy points of its teacher on held-out digits.
MAX_ACCURACY_GAP = 0.02


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    handle = load_model("digits-cnn")
    data = task_data(handle)
    base = dataclasses.replace(handle, make_inputs=data.held_out.example_feed)
    ctx = BuildContext(data, tmp_path_factory.mktemp("variants"))
    return base, data, ctx


def _accuracy(variant, data, reference):
    runner = make_runner(variant.handle, variant.backend)
    try:
        return evaluate(predict(runner, data.held_out), reference, data)
    finally:
        runner.close()


def test_distilled_student_is_smaller_and_close_to_its_teacher_on_digits(cnn):
    base, data, ctx = cnn
    reference = predict(make_runner(base, "torch"), data.held_out)
    variant = build_variant("torch-distill", base, ctx)
    teacher_params = sum(p.numel() for p in base.torch_module.parameters())
    student_params = sum(p.numel() for p in variant.model.parameters())
    assert student_params == variant.metadata["student_params"]
    assert student_params < 0.3 * teacher_params
    assert variant.size_mb < 0.3 * base.size_mb
    assert variant.params["temperature"] == 4.0 and variant.params["alpha"] == 0.7
    quality = _accuracy(variant, data, reference)
    teacher_accuracy = base.metadata["accuracy_test"]
    assert quality.reference == pytest.approx(teacher_accuracy)
    assert quality.items == len(data.held_out)
    assert teacher_accuracy - quality.accuracy <= MAX_ACCURACY_GAP
    exported = build_variant("ort-distill", base, ctx)  # the same trained student, as ONNX
    assert exported.backend == "onnxruntime"
    assert _accuracy(exported, data, reference).accuracy == pytest.approx(quality.accuracy)


def test_student_width_and_depth_are_settings():
    wide = sum(p.numel() for p in digits_student("digits-cnn", width=1.0, depth=2).parameters())
    narrow = sum(p.numel() for p in digits_student("digits-cnn", width=0.25, depth=2).parameters())
    shallow = digits_student("digits-cnn", width=0.5, depth=1)
    assert narrow < wide
    assert sum(isinstance(m, nn.Conv2d) for m in shallow) == 1
    assert shallow(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    mlp = digits_student("digits-mlp", width=0.5, depth=1)
    assert [m.out_features for m in mlp if isinstance(m, nn.Linear)] == [64, 10]

    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
    )
    teacher = SentenceEncoder(transformers.BertModel(config)).eval()
    student = encoder_student(teacher, width=0.5, depth=2)
    assert len(student.encoder.encoder.layer) == 2 and len(teacher.encoder.encoder.layer) == 4
    assert student.encoder.encoder.layer[0].intermediate.dense.out_features == 32
    ids, mask = torch.randint(0, 100, (2, 5)), torch.ones(2, 5, dtype=torch.long)
    assert student(ids, mask).shape == (2, 32)


def test_bad_distillation_settings_are_refused(cnn):
    base, _, ctx = cnn
    spec = get_spec("torch-distill")
    with pytest.raises(ConfigError, match="width"):
        spec.with_params(width=0.0)(base, ctx)
    with pytest.raises(ConfigError, match="depth"):
        spec.with_params(depth=0)(base, ctx)
    with pytest.raises(ConfigError, match="temperature"):
        spec.with_params(temperature=0.0, epochs=1)(base, ctx)
    with pytest.raises(ConfigError, match="no setting"):
        spec.with_params(heat=2.0)


def test_a_model_without_a_known_student_needs_one():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 2)

        def forward(self, x):
            return self.a(x) * 2

    handle = load_model(Odd(), example_input=torch.zeros(1, 4))
    with pytest.raises(VariantSkipped, match="student="):
        make_student(handle, None, None, None)
    student, origin = make_student(handle, None, None, nn.Linear(4, 2))
    assert origin == "user student" and isinstance(student, nn.Linear)
