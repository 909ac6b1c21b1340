"""What every panel shares: an output area, a readable error line, and background work with a
progress bar and a stop button.

Outputs are written as display-data dicts (``Output.outputs``), not through IPython's display
machinery, so a panel renders the same in a kernel, in Voila, from a worker thread, and in a
plain Python test. Charts become SVG on the server through vl-convert (offline).
"""

from __future__ import annotations

import html
import io
import threading
from collections.abc import Callable
from typing import Any

import altair as alt
import ipywidgets as W
import pandas as pd

from widgets.session import Session
from workbench.errors import ConfigError, WorkbenchError


def display_data(item: Any) -> dict[str, Any]:
    """One output of an ``Output`` widget: a DataFrame as an HTML table, an altair chart as SVG,
    anything else as escaped text."""
    if isinstance(item, pd.DataFrame):
        data = {"text/html": item.to_html(index=False, float_format=_fmt), "text/plain": str(item)}
    elif isinstance(item, alt.TopLevelMixin):
        buf = io.StringIO()
        item.save(buf, format="svg")
        data = {"image/svg+xml": buf.getvalue(), "text/plain": "chart"}
    else:
        data = {"text/html": f"<p>{html.escape(str(item))}</p>", "text/plain": str(item)}
    return {"output_type": "display_data", "data": data, "metadata": {}}


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def readable(exc: BaseException) -> str:
    """The message a panel shows: a WorkbenchError's own words, else the type and first line."""
    text = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, WorkbenchError):
        return text
    return f"unexpected {type(exc).__name__}: {text or 'no message'}"


class Panel:
    """Base of every panel: ``self.widget`` is what the dashboard shows.

    Subclasses build their controls in ``__init__`` and call :meth:`finish` with them.
    """

    title = "panel"
    slug = "panel"

    def __init__(self, session: Session) -> None:
        self.session = session
        self.status = W.HTML().add_class("wb-status").add_class(f"wb-{self.slug}-status")
        self.error = W.HTML().add_class("wb-error").add_class(f"wb-{self.slug}-error")
        self.error.layout.display = "none"
        self.out = W.Output().add_class("wb-output").add_class(f"wb-{self.slug}-output")
        self.widget: W.Box = W.VBox()
        self._thread: threading.Thread | None = None
        self.stop_event = threading.Event()
        self.progress: W.IntProgress | None = None
        self.stop_button: W.Button | None = None

    def listen(self, fn: Callable[[str, Any], None]) -> None:
        """Subscribe ``fn`` to the session; its errors show in this panel, not the publisher's."""
        self.session.subscribe(lambda topic, value: self.act(lambda: fn(topic, value)))

    def finish(self, *controls: W.Widget) -> None:
        self.widget = W.VBox([*controls, self.status, self.error, self.out])
        self.widget.add_class(f"wb-{self.slug}")

    def _ipython_display_(self) -> None:  # pragma: no cover - notebook display
        from IPython.display import display

        display(self.widget)

    # -- output

    def show(self, *items: Any) -> None:
        """Replace the output area with these tables, charts and lines."""
        self.out.outputs = tuple(display_data(i) for i in items)

    def say(self, text: str) -> None:
        self.status.value = html.escape(text)

    def fail(self, message: str) -> None:
        self.error.value = f"<b>Error:</b> {html.escape(message)}"
        self.error.layout.display = None

    def clear_error(self) -> None:
        self.error.value = ""
        self.error.layout.display = "none"

    def act(self, fn: Callable[[], Any]) -> bool:
        """Run ``fn``, showing any error as one readable line; True if it succeeded."""
        self.clear_error()
        try:
            fn()
        except Exception as exc:  # every failure is shown, never a traceback
            self.fail(readable(exc))
            return False
        return True

    # -- long work

    def make_progress(self, run: W.Button) -> tuple[W.IntProgress, W.Button]:
        self.run_button = run
        self.progress = W.IntProgress(value=0, min=0, max=1, description="progress")
        self.progress.add_class(f"wb-{self.slug}-progress")
        self.stop_button = W.Button(description="Stop", button_style="warning", disabled=True)
        self.stop_button.add_class(f"wb-{self.slug}-stop")
        self.stop_button.on_click(lambda _: self.stop_event.set())
        return self.progress, self.stop_button

    def tick(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress.max = max(1, total)
            self.progress.value = min(done, self.progress.max)

    def start(self, work: Callable[[], Any], done: Callable[[Any], None]) -> None:
        """Run ``work`` (in a thread when the session is in the background mode), then ``done``
        with its result; errors are shown in the panel. ``self.stop_event`` asks it to stop."""
        if self._thread is not None and self._thread.is_alive():
            self.fail("already running: wait for it to finish or press Stop")
            return
        self.stop_event.clear()
        self.clear_error()
        self.tick(0, 1)
        self.run_button.disabled = True
        if self.stop_button is not None:
            self.stop_button.disabled = False

        def body() -> None:
            try:
                result = work()
                done(result)
            except Exception as exc:
                self.fail(readable(exc))
            finally:
                self.run_button.disabled = False
                if self.stop_button is not None:
                    self.stop_button.disabled = True

        if self.session.background:
            self._thread = threading.Thread(target=body, name=f"wb-{self.slug}", daemon=True)
            self._thread.start()
        else:
            body()

    def join(self, timeout: float | None = None) -> None:
        """Wait for background work to finish (tests, scripts)."""
        if self._thread is not None:
            self._thread.join(timeout)


def number_box(
    description: str, value: float, css: str, *, step: float | None = None, tip: str = ""
) -> W.FloatText:
    box = W.FloatText(value=value, description=description, step=step, tooltip=tip or None)
    box.style.description_width = "170px"
    box.add_class(css)
    return box


def headline(css: str) -> W.HTML:
    """An HTML line holding one headline number (the browser test reads these)."""
    return W.HTML().add_class("wb-number").add_class(css)


def whole_numbers(text: str, field: str) -> list[int]:
    """``"1, 8,32"`` -> ``[1, 8, 32]``; anything else is a ``ConfigError`` naming ``field``.

    >>> whole_numbers("1, 8,32", "batch sizes")
    [1, 8, 32]
    """
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError as exc:
        raise ConfigError(
            f"{field}={text!r}: give whole numbers separated by commas, e.g. 1,8,32"
        ) from exc
