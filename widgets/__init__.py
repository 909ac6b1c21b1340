"""ipywidgets panels: thin views over the ``workbench`` API (no measurement or cost logic here)."""
