"""Knowledge distillation into a smaller student whose width and depth are settings.

Students:

- digits demos: the same family, ``width`` scaling every channel and hidden size, ``depth`` the
  number of convolution blocks (CNN) or hidden layers (MLP); trained from scratch;
- BERT-style encoders (MiniLM): ``depth`` layers kept from the teacher (evenly spaced) and
  ``width`` the share of feed-forward neurons kept (the strongest, as in structured pruning);
- any other ``nn.Sequential``: the teacher with ``width`` of its channels kept;
- otherwise the user passes ``student=`` (an untrained ``nn.Module`` with the teacher's inputs
  and outputs).

Loss: soft targets at a temperature ``T`` (Hinton et al.): ``alpha * T^2 * KL(teacher_T ||
student_T) + (1 - alpha) * hard loss``. For classifiers the soft targets are the teacher's class
probabilities and the hard loss is cross-entropy on the labels; for encoders the soft targets are
each item's similarities to the other items of its batch (a distribution over neighbours, which
keeps the ranking) and the hard loss is ``1 - cosine`` to the teacher's embedding.

Example
-------
>>> student = digits_student("digits-cnn", width=0.5, depth=2)
>>> sum(p.numel() for p in student.parameters())
9802
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.checks import fraction, number, whole
from workbench.compress.finetune import export_variant, teacher_outputs, train_batches
from workbench.compress.prune import ffn_blocks, prune_ffn_neurons, prune_sequential
from workbench.compress.quality import ArraySet, TaskData
from workbench.compress.registry import (
    BuildContext,
    Variant,
    VariantSkipped,
    make_variant,
    register_variant,
)
from workbench.errors import ConfigError
from workbench.models.handle import ModelHandle

DEFAULT_EPOCHS = {"classification": 40, "embedding": 4, "custom": 20}
DEFAULT_LR = {"classification": 3e-3, "embedding": 1e-4, "custom": 1e-3}
#: Temperature by task when none is given: class logits, or cosine similarities (in [-1, 1]).
DEFAULT_TEMPERATURE = {"classification": 4.0, "embedding": 0.05, "custom": 1.0}


def check_student_settings(width: float | None, depth: int | None) -> None:
    if width is not None:
        fraction("width", width, open_low=True, fix="give the share of channels kept")
    if depth is not None:
        whole("depth", depth, minimum=1, fix="give the number of layers kept")


def digits_student(name: str, width: float = 0.5, depth: int = 2) -> nn.Module:
    """An untrained student for a digits demo model (the teachers have depth 2)."""
    check_student_settings(width, depth)

    def size(n: int) -> int:
        return max(1, round(n * width))

    if name == "digits-cnn":
        if depth > 3:
            raise ConfigError(f"depth={depth} is too deep for 8x8 digits: use 1 to 3 conv blocks")
        layers: list[nn.Module] = []
        channels = 1
        for c in (16, 32, 64)[:depth]:
            layers += [nn.Conv2d(channels, size(c), 3, padding=1), nn.ReLU()]
            channels = size(c)
        hidden = size(64)
        layers += [nn.MaxPool2d(2), nn.Flatten(), nn.Linear(channels * 16, hidden), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(hidden, 10))
    if name == "digits-mlp":
        layers, features = [], 64
        for h in [128 // 2**i for i in range(depth)]:
            layers += [nn.Linear(features, size(h)), nn.ReLU()]
            features = size(h)
        return nn.Sequential(*layers, nn.Linear(features, 10))
    raise ConfigError(f"{name!r} is not a digits demo model")


def _encoder_layers(module: nn.Module) -> tuple[nn.Module, str] | None:
    """The parent and attribute name of a BERT-style ``ModuleList`` of layers."""
    for parent in module.modules():
        layers = getattr(parent, "layer", None)
        if isinstance(layers, nn.ModuleList) and layers and ffn_blocks(layers[0]):
            return parent, "layer"
    return None


def encoder_student(teacher: nn.Module, width: float, depth: int | None) -> nn.Module:
    """A copy of a BERT-style encoder with ``depth`` evenly spaced layers and ``width`` of its
    feed-forward neurons."""
    student = copy.deepcopy(teacher)
    found = _encoder_layers(student)
    if found is None:
        raise VariantSkipped("no BERT-style layer list found in the encoder")
    parent, attr = found
    layers = getattr(parent, attr)
    if depth is not None:
        if depth > len(layers):
            raise ConfigError(f"depth={depth} exceeds the teacher's {len(layers)} layers")
        keep = np.unique(np.round(np.linspace(0, len(layers) - 1, depth)).astype(int))
        setattr(parent, attr, nn.ModuleList([layers[i] for i in keep]))
        for m in student.modules():
            config = getattr(m, "config", None)
            if config is not None and hasattr(config, "num_hidden_layers"):
                config.num_hidden_layers = len(keep)
    if width < 1:
        prune_ffn_neurons(student, 1 - width)
    return student


def make_student(
    base: ModelHandle, width: float | None, depth: int | None, student: nn.Module | None
) -> tuple[nn.Module, str]:
    """The student for ``base`` and how it was made.

    Defaults: digits students keep the depth at half the width; encoder students keep half the
    layers at full width; other Sequential models keep half their channels.
    """
    check_student_settings(width, depth)
    if student is not None:
        return copy.deepcopy(student), "user student"
    if base.torch_module is None:
        raise VariantSkipped(f"{base.name} is an ONNX model: distillation needs the torch module")
    if base.name in ("digits-cnn", "digits-mlp"):
        student = digits_student(base.name, width or 0.5, depth or 2)
        return student, f"{base.name} family, from scratch"
    found = _encoder_layers(base.torch_module)
    if found is not None:
        layers = len(getattr(*found))
        student = encoder_student(base.torch_module, width or 1.0, depth or max(1, layers // 2))
        return student, "teacher layers kept"
    if isinstance(base.torch_module, nn.Sequential) and depth is None:
        module = copy.deepcopy(base.torch_module)
        prune_sequential(module, 1 - (width or 0.5))
        return module, "teacher channels kept"
    raise VariantSkipped(
        f"no default student for {type(base.torch_module).__name__}: pass student=nn.Module "
        "(same inputs and outputs as the teacher) in the variant's settings"
    )


def distil(
    student: nn.Module,
    teacher: nn.Module,
    data: TaskData,
    temperature: float | None = None,
    alpha: float = 0.7,
    epochs: int | None = None,
    lr: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Train ``student`` on ``data.train`` from ``teacher``'s soft targets; returns settings."""
    task = data.task
    temperature = DEFAULT_TEMPERATURE[task] if temperature is None else float(temperature)
    epochs = DEFAULT_EPOCHS[task] if epochs is None else int(epochs)
    lr = DEFAULT_LR[task] if lr is None else float(lr)
    number("temperature", temperature, minimum=0, open_low=True, fix="soften targets with e.g. 4")
    fraction("alpha", alpha, fix="give the weight of the soft-target loss")
    train = data.train
    target = teacher_outputs(teacher, train)
    labels = None if train.labels is None else torch.from_numpy(np.asarray(train.labels))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    batch = 64 if isinstance(train, ArraySet) else 16
    student.train()
    for _ in range(epochs):
        for idx, tensors in train_batches(train, batch, rng):
            sel = torch.from_numpy(np.asarray(idx))
            out = student(*tensors)
            out = out[0] if isinstance(out, (tuple, list)) else out
            loss = _loss(
                out, target[sel], None if labels is None else labels[sel], task, temperature, alpha
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    student.eval()
    return {
        "temperature": temperature,
        "alpha": alpha,
        "epochs": epochs,
        "lr": lr,
        "train_data": f"{train.description} ({len(train)} items)",
    }


def _loss(
    out: torch.Tensor,
    target: torch.Tensor,
    labels: torch.Tensor | None,
    task: str,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    kl = nn.functional.kl_div
    if task == "classification":
        soft = kl(
            nn.functional.log_softmax(out / temperature, -1),
            nn.functional.softmax(target / temperature, -1),
            reduction="batchmean",
        )
        hard = nn.functional.cross_entropy(out, labels) if labels is not None else soft * 0
        return alpha * temperature**2 * soft + (1 - alpha) * hard
    if task == "embedding":
        s = nn.functional.normalize(out, dim=-1)
        t = nn.functional.normalize(target, dim=-1)
        mask = torch.eye(len(s), dtype=torch.bool)
        s_sim = (s @ s.T / temperature).masked_fill(mask, -1e4)
        t_sim = (t @ t.T / temperature).masked_fill(mask, -1e4)
        soft = (
            kl(
                nn.functional.log_softmax(s_sim, -1),
                nn.functional.softmax(t_sim, -1),
                reduction="batchmean",
            )
            if len(s) > 1
            else s.sum() * 0
        )
        hard = 1 - (s * t).sum(-1).mean()
        return alpha * temperature**2 * soft + (1 - alpha) * hard
    return nn.functional.mse_loss(out, target)


def _distilled(
    base: ModelHandle, ctx: BuildContext, settings: dict[str, Any]
) -> tuple[nn.Module, dict[str, Any]]:
    key = "distill-" + repr(
        sorted((k, id(v) if k == "student" else v) for k, v in settings.items())
    )
    if key not in ctx.memo:
        student, origin = make_student(
            base, settings["width"], settings["depth"], settings["student"]
        )
        trained = distil(
            student,
            base.torch_module,
            ctx.data,
            settings["temperature"],
            settings["alpha"],
            settings["epochs"],
            seed=ctx.seed,
        )
        teacher_params = sum(p.numel() for p in base.torch_module.parameters())
        student_params = sum(p.numel() for p in student.parameters())
        meta = {
            "student": origin,
            "teacher_params": teacher_params,
            "student_params": student_params,
            **trained,
        }
        ctx.memo[key] = (student, meta)
    return ctx.memo[key]


_SETTINGS = {
    "width": None,
    "depth": None,
    "temperature": None,
    "alpha": 0.7,
    "epochs": None,
    "student": None,
}


def _params(settings: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in settings.items() if k != "student"}
    out.update(temperature=meta["temperature"], epochs=meta["epochs"])
    if settings["student"] is not None:
        out["student"] = type(settings["student"]).__name__
    return out


@register_variant("torch-distill", "distillation", "distilled student (torch)", **_SETTINGS)
def build_distill(base: ModelHandle, ctx: BuildContext, **settings: Any) -> Variant:
    """A smaller student trained on the teacher's soft targets, run in torch eager."""
    student, meta = _distilled(base, ctx, {**_SETTINGS, **settings})
    params = _params({**_SETTINGS, **settings}, meta)
    return make_variant(base, "torch-distill", "distillation", params, student, metadata=meta)


@register_variant("ort-distill", "distillation", "distilled student, exported to ONNX", **_SETTINGS)
def build_distill_onnx(base: ModelHandle, ctx: BuildContext, **settings: Any) -> Variant:
    """The distilled student exported to ONNX."""
    student, meta = _distilled(base, ctx, {**_SETTINGS, **settings})
    params = _params({**_SETTINGS, **settings}, meta)
    tag = hashlib.sha256(repr(params).encode()).hexdigest()[:8]
    path = export_variant(base, student, ctx.path(f"ort-distill-{tag}"))
    return make_variant(base, "ort-distill", "distillation", params, path, metadata=meta)
