"""``load_model``: resolve what the user names (a demo name, an ONNX path, a ``torch.nn.Module``
with an example input) into a :class:`~workbench.models.handle.ModelHandle`.

Example
-------
>>> from workbench.models import load_model
>>> load_model("digits-mlp").inputs[0].name
'input'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from workbench.errors import UnknownModelError
from workbench.models import zoo
from workbench.models.handle import ModelHandle, from_torch, load_onnx


def load_model(
    model: Any,
    example_input: Any = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    name: str | None = None,
) -> ModelHandle:
    """Resolve a demo name, an ONNX path, or a ``torch.nn.Module`` (with ``example_input``).

    Parameters
    ----------
    model: ``"digits-cnn"``, ``"digits-mlp"``, ``"minilm"``, a path to an ``.onnx`` file, a
        ``torch.nn.Module`` or a :class:`ModelHandle` (returned as is).
    example_input: for a torch module: a tensor, a tuple of tensors, or a dict name -> tensor,
        with the batch on dimension 0.
    input_shapes: for an ONNX file: full shapes (batch first) for inputs with dynamic dimensions;
        for ``minilm``: ``{"input_ids": (1, seq_len)}`` sets the sequence length.
    """
    if isinstance(model, ModelHandle):
        return model
    if isinstance(model, (str, Path)):
        text = str(model)
        if text in zoo.DEMOS:
            return zoo.load_demo(text, input_shapes=input_shapes)
        path = Path(text)
        if path.suffix.lower() == ".onnx" or path.exists():
            return load_onnx(path, input_shapes=input_shapes)
        raise UnknownModelError(
            f"unknown model {text!r}: use a demo model ({', '.join(zoo.DEMOS)}) or the path of "
            "an existing .onnx file"
        )
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        torch = None
    if torch is not None and isinstance(model, torch.nn.Module):
        return from_torch(model, example_input, name=name)
    raise UnknownModelError(
        f"cannot profile an object of type {type(model).__name__}: pass a demo model name, "
        "a path to an .onnx file, or a torch.nn.Module with example_input"
    )
