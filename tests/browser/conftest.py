"""Browser-tier fixtures: Debian's Chromium driven by Playwright (never a
downloaded browser), launched with a fake microphone that plays a WAV file,
plus a screenshot helper writing artifacts/browser/*.png."""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.procs import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "artifacts" / "browser"
BASE_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
    # audio keeps running in a background/headless tab
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
]

if not Path(CHROMIUM).exists():
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="session")
def playwright_instance():
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def launch(playwright_instance) -> Iterator[Callable]:
    """launch(mic_wav=None, allow_mic=True, init_script=None) -> page. `allow_mic=False` starts
    Chromium without the auto-accepting permission UI and with the permission
    denied, as a person who clicked "Block" would; `init_script` runs before
    the page's own scripts (e.g. to take a browser feature away)."""
    opened = []

    def _launch(url: str, mic_wav: Path | None = None, allow_mic: bool = True, init_script: str | None = None):
        flags = list(BASE_FLAGS) + ["--use-fake-device-for-media-stream"]
        if allow_mic:
            flags.append("--use-fake-ui-for-media-stream")
        if mic_wav is not None:
            flags.append(f"--use-file-for-fake-audio-capture={mic_wav}")
        browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, headless=True, args=flags)
        context = browser.new_context(viewport={"width": 1280, "height": 820},
                                      permissions=["microphone"] if allow_mic else [])
        page = context.new_page()
        if init_script:
            page.add_init_script(init_script)   # runs before the page's own scripts
        logs: list[str] = []
        page.on("console", lambda m: logs.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: logs.append(f"pageerror: {e}"))
        page.console_log = logs
        opened.append(browser)
        page.goto(url)
        page.wait_for_function("window.__voiceTest && window.__voiceTest.connection === 'open'", timeout=20000)
        return page

    yield _launch
    for b in opened:
        with contextlib.suppress(Exception):
            b.close()


def hook(page, path: str = ""):
    """Read window.__voiceTest (or one dotted path in it)."""
    expr = "window.__voiceTest" + (f".{path}" if path else "")
    return page.evaluate(f"JSON.parse(JSON.stringify({expr}))")


def wait_hook(page, condition: str, timeout_s: float = 30) -> None:
    """Wait until a JS condition on `t` (= window.__voiceTest) holds; on timeout
    the failure shows the hook's state, so it says what did happen instead."""
    try:
        page.wait_for_function(f"(() => {{ const t = window.__voiceTest; return {condition}; }})()",
                               timeout=timeout_s * 1000)
    except sync_api.TimeoutError:
        state = {k: v for k, v in hook(page).items() if k != "serverEvents"}
        events = hook(page, "serverEvents")
        raise AssertionError(f"timed out after {timeout_s} s waiting for: {condition}\n"
                             f"page state: {state}\nserver events: {events}") from None


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


@pytest.fixture(scope="session")
def real_stack():
    """The five speech services and the gateway as real processes (tests/stack.py)."""
    root = ROOT / "services"
    missing = [s for s in ("vad", "asr", "llm", "rag", "tts", "gateway") if not (root / s / "__main__.py").exists()]
    if missing:
        pytest.skip(f"services not built yet: {', '.join(missing)}")
    from concurrent.futures import ThreadPoolExecutor

    from tests.stack import start_stack

    # Playwright's sync API keeps an event loop running in this thread, and the
    # gRPC readiness probe uses asyncio.run(): start the stack from another thread.
    with ThreadPoolExecutor(1) as pool:
        st = pool.submit(start_stack).result()
    try:
        yield st
    finally:
        st.stop()
