"""Where the page sends the microphone, in real headless Chromium.

Invariants: the page connects to the server it came from, whatever its
address says (a crafted ``?ws=`` link sends nothing elsewhere); another
server is used only when the person types it in the settings, and then it
is named on the page for as long as it is used."""
from __future__ import annotations

import time

from tests.browser.conftest import shot
from tests.browser.mock_gateway import MockGateway


def wait(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cond():
        time.sleep(0.05)
    assert cond()


def test_the_page_talks_to_its_own_server_unless_the_settings_say_otherwise(launch):
    own, other = MockGateway().start(), MockGateway().start()
    try:
        page = launch(own.url + f"?ws=ws://127.0.0.1:{other.port}/v1/realtime")
        assert len(own.connects) == 1 and other.connects == []
        assert not page.is_visible("#server-note")
        page.click("#settings-open")
        page.fill("#server", f"ws://127.0.0.1:{other.port}")
        page.dispatch_event("#server", "change")
        wait(lambda: len(other.connects) == 1)
        page.keyboard.press("Escape")
        assert page.inner_text("#server-note") == f"Connected to 127.0.0.1:{other.port}"
        shot(page, "server-01-other-server-named")
        page.reload()     # remembered, and still named
        wait(lambda: len(other.connects) == 2)
        assert page.is_visible("#server-note")
        page.click("#settings-open")
        page.fill("#server", "")
        page.dispatch_event("#server", "change")
        wait(lambda: len(own.connects) == 2)
        page.keyboard.press("Escape")
        assert not page.is_visible("#server-note")
    finally:
        own.stop()
        other.stop()


KEY = "browser-key-0123456789abcdef"


class KeyedGateway:
    """The real gateway app (fake speech backends) with an API key, on a port."""

    def __init__(self) -> None:
        import threading

        import uvicorn

        from common.clock import MonotonicClock
        from services.gateway.app import create_app
        from services.gateway.fakes import FakeBackends, FakeProvider
        from services.gateway.settings import GatewaySettings
        from tests.procs import free_port

        self.port = free_port()
        clock = MonotonicClock()
        app = create_app(GatewaySettings(redis_url="", api_keys=KEY, port=self.port),
                         backends=FakeProvider(lambda sid: FakeBackends.create(clock)))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    ws="websockets-sansio"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait(lambda: self.server.started)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def test_a_keyed_gateway_admits_its_page_once_the_key_is_in_the_settings(playwright_instance):
    from tests.browser.conftest import BASE_FLAGS, CHROMIUM

    gw = KeyedGateway()
    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, headless=True, args=BASE_FLAGS)
    try:
        page = browser.new_context().new_page()
        page.goto(f"http://127.0.0.1:{gw.port}/")
        # Without the key: refused at the upgrade, the page keeps retrying.
        page.wait_for_function("window.__voiceTest && window.__voiceTest.connection === 'reconnecting'",
                               timeout=10000)
        page.click("#settings-open")
        page.fill("#credential", KEY)
        page.dispatch_event("#credential", "change")
        # Chromium needs the server to pick one of the offered subprotocols ("realtime").
        page.wait_for_function("window.__voiceTest.connection === 'open'", timeout=10000)
        page.wait_for_function("window.__voiceTest.sessionId", timeout=10000)
        assert not page.is_visible("#server-note")
    finally:
        browser.close()
        gw.stop()
