"""The runtime imports nothing of ours and only its own small set of packages."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import serving

ALLOWED = {"numpy", "onnxruntime", "orjson", "httptools", "uvloop", "serving"}
LAZY = {"ray"}  # imported inside functions only (serving/ray_app.py)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level package, imported at module level?) for every import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name.split(".")[0], id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append((node.module.split(".")[0], id(node) in top_level))
    return found


def test_serving_imports_only_the_stdlib_numpy_onnxruntime_and_its_server_stack():
    folder = Path(serving.__file__).parent
    for path in sorted(folder.glob("*.py")):
        for package, at_top in _imports(path):
            if package in sys.stdlib_module_names or package == "__future__":
                continue
            if package in LAZY:
                assert not at_top, f"{path.name} imports {package} at module level"
                continue
            assert package in ALLOWED, f"{path.name} imports {package}"


def test_requirements_pin_every_package_exactly():
    lines = (Path(serving.__file__).parent / "requirements.txt").read_text().splitlines()
    pins = [line.split(";")[0].strip() for line in lines if line and not line.startswith("#")]
    assert pins and all("==" in pin for pin in pins), pins
    names = {pin.split("==")[0] for pin in pins}
    assert {"numpy", "onnxruntime", "httptools", "uvloop", "orjson"} <= names
