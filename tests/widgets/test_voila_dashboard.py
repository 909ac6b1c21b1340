"""The dashboard as an app: Voila serves notebooks/dashboard.ipynb on 127.0.0.1 and headless
chromium (Debian's, driven by Playwright; no browser download) picks the demo model, runs a
profile, changes a cost input and sees the chart and the numbers change.

One Voila per module, stopped with SIGTERM; every request that is not to 127.0.0.1 is blocked.
The screenshot is kept in ``test-artifacts/voila_dashboard.png`` at the repository root.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "dashboard.ipynb"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing and we may; else a stated skip."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"{CHROMIUM} is missing and apt-get cannot install it here (not root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not os.path.exists(CHROMIUM):
        pytest.skip(f"chromium could not be installed with apt-get: {done.stderr[-300:]}")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"voila exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"voila did not listen on {port} in {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def voila(tmp_path_factory: pytest.TempPathFactory):
    """Voila serving the dashboard; the kernel's run store and caches are this test's."""
    pytest.importorskip("voila")
    from workbench.models import load_model

    load_model("digits-cnn")  # trained into the session cache here, not inside the page load
    work = tmp_path_factory.mktemp("voila")
    port = _free_port()
    log = work / "voila.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "WORKBENCH_DB": str(work / "runs.sqlite"),
        "WORKBENCH_BUNDLES_DIR": str(work / "bundles"),
        "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable, "-m", "voila", str(NOTEBOOK), "--no-browser", f"--port={port}",
        "--Voila.ip=127.0.0.1", "--show_tracebacks=True",
        "--MappingKernelManager.cull_idle_timeout=120", "--MappingKernelManager.cull_interval=30",
    ]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=work)
    try:
        _wait_port(port, proc, log)
        yield {"url": f"http://127.0.0.1:{port}/", "log": log, "db": work / "runs.sqlite"}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _dollars(text: str) -> float:
    match = re.search(r"\$([\d,]+(?:\.\d+)?)", text)
    assert match, f"no dollar figure in {text!r}"
    return float(match.group(1).replace(",", ""))


def test_dashboard_profile_then_cost_in_the_browser(voila, chromium, tmp_path) -> None:
    from playwright.sync_api import expect, sync_playwright

    blocked: list[str] = []

    def route(r) -> None:
        url = r.request.url
        if urlparse(url).hostname in ("127.0.0.1", "localhost") or url.startswith(
            ("data:", "blob:")
        ):
            r.continue_()
        else:
            blocked.append(url)
            r.abort()

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "voila_dashboard.png"
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync",
                  "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost"],
            viewport={"width": 1280, "height": 1000},
        )  # fmt: skip
        try:
            ctx.route("**/*", route)
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            page.goto(voila["url"], wait_until="domcontentloaded", timeout=120_000)
            model = page.locator(".wb-model select")
            try:
                model.wait_for(state="visible", timeout=90_000)
            except Exception:
                log = voila["log"].read_text()[-3000:]
                raise AssertionError(f"dashboard did not render; voila log:\n{log}") from None

            # pick the demo model, run a profile
            model.select_option("digits-cnn")
            expect(page.locator(".wb-profile-status")).to_contain_text(
                "loaded digits-cnn", timeout=60_000
            )
            page.locator(".wb-profile-run").click()
            expect(page.locator(".wb-profile-p99")).to_contain_text("ms", timeout=60_000)
            latency_chart = page.locator(".wb-profile-output .jp-RenderedSVG img").first
            expect(latency_chart).to_be_visible(timeout=30_000)
            expect(page.locator(".wb-profile-output table.dataframe").first).to_be_visible()
            expect(page.locator(".wb-profile-error")).to_be_hidden()

            # the cost tab already holds the profiled figures; change a price
            page.locator(".lm-TabBar-tab", has_text="Lifecycle cost").click()
            total = page.locator(".wb-cost-total-value")
            expect(total).to_be_visible(timeout=30_000)
            chart = page.locator(".wb-cost-output .jp-RenderedSVG img").first
            expect(chart).to_be_visible(timeout=30_000)
            before_text = total.inner_text()
            before_total = _dollars(before_text)
            before_chart = chart.get_attribute("src")
            price = page.locator(".wb-cost-instance-usd-per-h input")
            price.fill("0.68")
            price.press("Enter")
            expect(total).not_to_have_text(before_text, timeout=30_000)
            expect(chart).not_to_have_attribute("src", before_chart, timeout=30_000)
            after_total = _dollars(total.inner_text())
            page.screenshot(path=str(shot), full_page=True)
        finally:
            ctx.close()

    # a dearer instance-hour raises the lifecycle total (training cost is unchanged)
    assert after_total > before_total
    assert shot.stat().st_size > 10_000
    from workbench.measure.store import RunStore

    with RunStore(voila["db"]) as store:
        kinds = [r.kind for r in store.runs()]
    assert "profile" in kinds, "the profile run went to the run store named by WORKBENCH_DB"
    assert all("127.0.0.1" not in u for u in blocked)
