"""A real headless Chromium (Debian's, driven by Playwright) against `glmtrt ui` and the CPU Triton.

Types a Chinese question, sees the streamed answer, saves a screenshot under build/ for a
person to look at, and checks that two browser contexts (two tabs of two users) keep separate
histories.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.api.fronts import CONTENT, make_repo, start_server

pytestmark = [pytest.mark.triton, pytest.mark.slow]
sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("streamlit")
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "ui"


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("Debian's chromium is not installed (scripts/install.sh installs it as root with apt-get)")


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    browser_path = chromium()
    from glmtrt.triton.server import free_port

    with start_server(make_repo(tmp_path_factory.mktemp("browser"), max_batch_size=8)[0]) as triton:
        port = free_port()
        log = open(tmp_path_factory.mktemp("uilog") / "ui.log", "w+")
        proc = subprocess.Popen([sys.executable, "-m", "glmtrt", "ui", "--temperature", "0", "--max-tokens", "48", "--triton", triton.grpc_url,
                                 "--metrics", f"{triton.host}:{triton.metrics_port}", "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 180
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.time() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"glmtrt ui did not come up:\n{log.read()[-3000:]}")
                time.sleep(0.5)
            yield url, browser_path
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


def ask(page, text: str) -> None:
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(text)
    box.press("Enter")


def test_chinese_question_streams_in_a_real_browser(ui):
    url, browser_path = ui
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, headless=True, args=["--no-sandbox"])
        try:
            a, b = browser.new_context(viewport={"width": 900, "height": 700}), browser.new_context()
            pa, pb = a.new_page(), b.new_page()
            for pg in (pa, pb):
                pg.goto(url, timeout=120_000)
                pg.get_by_test_id("stChatInputTextArea").wait_for(timeout=120_000)
            # greedy, so the scripted model gives its scripted answer
            ask(pa, "你好")
            pa.get_by_text(CONTENT).wait_for(timeout=120_000)
            pa.get_by_text("TTFT").first.wait_for(timeout=60_000)
            pa.screenshot(path=str(SHOTS / "chat.png"), full_page=True)
            ask(pb, "请介绍一下北京")
            pb.get_by_text("请介绍一下北京").wait_for(timeout=60_000)
            pb.get_by_text("TTFT").first.wait_for(timeout=120_000)
            assert pa.get_by_text("请介绍一下北京").count() == 0      # B's question is not in A's tab
            assert pb.get_by_text("你好", exact=True).count() == 0    # and A's is not in B's
            assert pa.get_by_test_id("stChatMessage").count() == 2
            assert pb.get_by_test_id("stChatMessage").count() == 2
            assert "\ufffd" not in pa.inner_text("body")
        finally:
            browser.close()
    assert (SHOTS / "chat.png").stat().st_size > 1000
