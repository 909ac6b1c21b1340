"""ipywidgets panels: thin views over the ``workbench`` API (no measurement or cost logic here).

``dashboard()`` composes every panel as tabs over one shared :class:`Session`.
"""

from widgets.dashboard import Dashboard, dashboard
from widgets.session import Figures, Session

__all__ = ["Dashboard", "Figures", "Session", "dashboard"]
