"""The project's exception types. Every message names the bad value and the fix.

The CLI prints ``str(error)`` as one line and exits with ``error.exit_code``; a traceback is shown
only with ``--debug``.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class: a problem the user can fix; the message says what is wrong and how to fix it."""

    exit_code = 2


class UnknownModelError(WorkbenchError):
    """A model name that is neither a demo model nor an existing ONNX file."""


class ModelLoadError(WorkbenchError):
    """A model file that cannot be read or is not a valid model."""


class InputShapeError(WorkbenchError):
    """An input shape that does not fit the model."""


class ConfigError(WorkbenchError):
    """A setting out of range (batch size, threads, iterations, ...)."""


class MissingExtraError(WorkbenchError):
    """An optional dependency group is not installed."""

    def __init__(self, extra: str, package: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the optional package '{package}', which is not installed; "
            f"install it with: pip install 'inference-workbench[{extra}]'"
        )
        self.extra = extra
        self.package = package


class StoreError(WorkbenchError):
    """The run store cannot be opened or queried."""


class BackendUnavailableError(WorkbenchError):
    """A backend or device that this machine does not have (e.g. CUDA without a GPU)."""


class EnergyError(WorkbenchError):
    """An energy meter misused or failing: a window ended twice or never begun, an unknown GPU
    index, an unreadable RAPL counter."""


class ConstraintError(WorkbenchError):
    """Search constraints that no measured configuration meets; the message names the
    constraint(s) and the closest candidate."""


class ExportError(WorkbenchError):
    """A bundle that could not be written (disk full, file size limit, no permission); nothing
    is left behind."""


class RegressionError(WorkbenchError):
    """A candidate worse than its baseline beyond a threshold (cost per 1M predictions, p99):
    the deployment gate failed. Exit code 1, so CI tells it apart from a usage error (2)."""

    exit_code = 1
