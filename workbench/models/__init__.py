"""Models: the handle the workbench runs (torch module or ONNX file), the built-in demo models and
the data sets they are trained and judged on.

- :mod:`~workbench.models.load`: ``load_model(name | module | path)``.
- :mod:`~workbench.models.handle`: ``ModelHandle``, torch -> ONNX export and its check.
- :mod:`~workbench.models.zoo`: ``digits-cnn``, ``digits-mlp``, ``minilm``.
- :mod:`~workbench.models.datasets`: the shipped digits and sentence splits.

Example
-------
>>> from workbench.models import load_model
>>> load_model("digits-mlp").example_inputs(batch_size=4)["input"].shape
(4, 64)
"""

from workbench.models.handle import ModelHandle, TensorSpec, export_onnx, from_torch, load_onnx
from workbench.models.load import load_model
from workbench.models.zoo import DEMOS

__all__ = [
    "DEMOS",
    "ModelHandle",
    "TensorSpec",
    "export_onnx",
    "from_torch",
    "load_model",
    "load_onnx",
]
