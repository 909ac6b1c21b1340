"""The bundle runtime (``python -m serving BUNDLE``): the standard library, numpy, onnxruntime,
orjson, httptools and uvloop only; never the workbench, torch or Jupyter. See docs/serving.md."""
