"""The bundle runtime. Depends only on numpy, onnxruntime and its server stack, never on workbench."""
