"""The bundle runtime: numpy, onnxruntime and its server stack only, never workbench."""
