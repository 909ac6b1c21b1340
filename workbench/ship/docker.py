"""The bundle's container files: the ``Dockerfile``, and the copy of the ``serving`` runtime with
its pinned ``requirements.txt`` that the image installs (and a plain virtualenv too).

:func:`dockerfile` is pure (manifest in, text out); :func:`copy_runtime` writes into a bundle
folder. :func:`workbench.ship.bundle.export` calls both.

Example
-------
>>> from serving.manifest import Manifest
>>> print(dockerfile(Manifest(name="digits-mlp", models=())).splitlines()[0])
# docker build -t digits-mlp:1 .   then   docker run -p 8080:8080 digits-mlp:1
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import serving
from serving.manifest import Manifest

#: The port the server listens on inside the container (and in every deployment file).
PORT = 8080
#: What ``docker build`` leaves out of the image.
DOCKERIGNORE = "**/__pycache__\n*.tar.gz\n"


def copy_runtime(folder: Path) -> None:
    """Copy the ``serving`` package (sources, ``openapi.json``) to ``folder/serving`` and its
    ``requirements.txt`` to ``folder``."""
    src = Path(serving.__file__).resolve().parent
    dest = folder / "serving"
    dest.mkdir()
    for item in sorted(src.iterdir()):
        if item.is_file() and item.suffix in (".py", ".txt", ".json"):
            shutil.copyfile(item, dest / item.name)
    shutil.copyfile(src / "requirements.txt", folder / "requirements.txt")


def dockerfile(m: Manifest) -> str:
    """A small image: python slim, the pinned requirements, the bundle, a non-root user."""
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"""\
# docker build -t {m.name}:{m.version} .   then   docker run -p {PORT}:{PORT} {m.name}:{m.version}
FROM python:{py}-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /bundle
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN useradd --uid 10001 --no-create-home serving
USER 10001
EXPOSE {PORT}
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; \\
urllib.request.urlopen('http://127.0.0.1:{PORT}/v2/health/ready')"
# Inside a container the server must listen on all interfaces; set SERVING_TOKEN for auth.
ENTRYPOINT ["python", "-m", "serving", "/bundle", "--host", "0.0.0.0", "--port", "{PORT}"]
"""
