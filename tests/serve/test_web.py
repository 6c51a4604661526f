"""kame's web page in real Chromium (Debian's, driven by Selenium through the system chromedriver):
a WAV of a spoken question as its microphone, against a real `kame serve`."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests.serve.conftest import Server, serving
from tests.session.conftest import QUESTION, wait_for_event
from tests.support.speech import synthesize

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Chromium loops the file: the question, then silence long enough for the answer.
    path = tmp_path_factory.mktemp("web") / "question.wav"
    audio = np.concatenate(
        [np.zeros(24_000, np.float32), synthesize(QUESTION), np.zeros(24_000 * 8, np.float32)]
    )
    sf.write(path, audio, 24_000, subtype="PCM_16")
    return path


def browser(microphone: Path, *, allow_microphone: bool = True) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--use-fake-device-for-media-stream",
        # The permission prompt answered yes, or (the user says no) every prompt denied.
        "--use-fake-ui-for-media-stream" if allow_microphone else "--deny-permission-prompts",
        f"--use-file-for-fake-audio-capture={microphone}",
        "--window-size=1200,1000",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager never looks for (or downloads) a browser or driver.
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


@pytest.fixture
def chrome(question_wav: Path) -> Iterator[webdriver.Chrome]:
    driver = browser(question_wav)
    try:
        yield driver
    finally:
        driver.quit()


def stats(driver: webdriver.Chrome) -> dict[str, Any]:
    return driver.execute_script("return JSON.parse(JSON.stringify(window.kameStats))")  # type: ignore[no-any-return]


def wait(driver: webdriver.Chrome, condition: Any, timeout: float) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def status(driver: webdriver.Chrome) -> str:
    return driver.find_element(By.CSS_SELECTOR, "[data-testid=status]").text


def talking(driver: webdriver.Chrome) -> bool:
    """The page is in a session and the server's audio reaches it."""
    return stats(driver)["state"] == "talking" and stats(driver)["audioPacketsReceived"] > 0


def start_with_token(driver: webdriver.Chrome, url: str, token: str) -> None:
    driver.get(url + "/")
    driver.find_element(By.CSS_SELECTOR, "[data-testid=token]").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "[data-testid=start]").click()


def console_errors(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_the_page_hears_the_question_shows_the_answer_and_plays_the_voice(
    server: Server, chrome: webdriver.Chrome, tmp_path: Path
) -> None:
    before = len(server.sessions())
    chrome.get(server.url + "/")
    chrome.find_element(By.CSS_SELECTOR, "[data-testid=start]").click()

    # The question's final transcript, the oracle's text and the voice's words, on the page.
    wait(chrome, lambda d: stats(d)["finals"], 90)
    wait(chrome, lambda d: stats(d)["oracleText"].strip(), 90)
    wait(chrome, lambda d: stats(d)["voiceText"].strip(), 60)
    # The page decoded the server's audio and its worklet played it (a second of the voice).
    wait(chrome, lambda d: stats(d)["audioSamplesPlayed"] >= 24_000, 30)
    # The answer complete (for the screenshot; the oracle's text is checked above).
    wait(chrome, lambda d: stats(d)["oracleDone"] > 0, 60)
    page = stats(chrome)
    assert page["audioFramesPlayed"] >= 12
    assert page["audioFramesSent"] > 0
    assert "capital" in page["finals"][0].lower() or "france" in page["finals"][0].lower()
    shown = chrome.find_element(By.CSS_SELECTOR, "[data-testid=finals]").text
    assert page["finals"][0] in shown
    assert chrome.find_element(By.CSS_SELECTOR, "[data-testid=oracle]").text.strip()
    assert chrome.find_element(By.CSS_SELECTOR, "[data-testid=voice]").text.strip()
    assert "ms" in chrome.find_element(By.CSS_SELECTOR, "[data-testid=jitter]").text
    chrome.save_screenshot(str(tmp_path / "web-page.png"))
    print(json.dumps({k: v for k, v in page.items() if k != "errors"}))

    # The server's own log of this session has the same transcript.
    sessions = server.sessions()
    assert len(sessions) == before + 1
    final = wait_for_event(sessions[-1] / "events.jsonl", lambda e: e["type"] == "FinalTranscript", 10)
    assert final["text"] == page["finals"][0]

    assert console_errors(chrome) == []
    chrome.find_element(By.CSS_SELECTOR, "[data-testid=start]").click()
    wait(chrome, lambda d: status(d) == "Stopped.", 10)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    token = {"KAME_WEB_TEST_TOKEN": "right-token"}
    with serving(
        tmp_path_factory.mktemp("web-secured") / "logs", "--token-env", *token, env=token
    ) as running:
        yield running


def test_a_wrong_token_shows_the_refusal_and_the_right_one_talks(
    secured: Server, chrome: webdriver.Chrome
) -> None:
    start_with_token(chrome, secured.url, "wrong-token")
    wait(chrome, lambda d: "Wrong access token" in status(d), 30)
    assert stats(chrome)["state"] == "refused"
    assert secured.sessions() == []
    # The right one opens a session (the page sends it as ?token=: a browser cannot set the header).
    token = chrome.find_element(By.CSS_SELECTOR, "[data-testid=token]")
    token.clear()
    token.send_keys("right-token")
    chrome.find_element(By.CSS_SELECTOR, "[data-testid=start]").click()
    wait(chrome, talking, 60)
    assert len(secured.sessions()) == 1


def test_the_microphone_denied_says_how_to_allow_it(server: Server, question_wav: Path) -> None:
    driver = browser(question_wav, allow_microphone=False)
    try:
        before = len(server.sessions())
        driver.get(server.url + "/")
        driver.find_element(By.CSS_SELECTOR, "[data-testid=start]").click()
        wait(driver, lambda d: "Microphone denied" in status(d), 30)
        assert driver.find_element(By.CSS_SELECTOR, "[data-testid=start]").text == "Start"
        assert len(server.sessions()) == before
    finally:
        driver.quit()


def test_a_second_page_waits_with_its_place_then_talks(
    server: Server, chrome: webdriver.Chrome, question_wav: Path
) -> None:
    chrome.get(server.url + "/")
    chrome.find_element(By.CSS_SELECTOR, "[data-testid=start]").click()
    wait(chrome, lambda d: stats(d)["state"] == "talking", 60)
    second = browser(question_wav)
    try:
        second.get(server.url + "/")
        second.find_element(By.CSS_SELECTOR, "[data-testid=start]").click()
        wait(second, lambda d: "place 1 in the queue" in status(d), 30)
        assert stats(second)["state"] == "queued"
        # The first page stops (by keyboard): the second one's turn comes.
        chrome.find_element(By.CSS_SELECTOR, "[data-testid=start]").send_keys(Keys.ENTER)
        wait(chrome, lambda d: status(d) == "Stopped.", 10)
        wait(second, talking, 60)
    finally:
        second.quit()


def test_a_server_stopped_mid_session_shows_connection_lost(
    secured: Server, chrome: webdriver.Chrome
) -> None:
    # The token server's last user (a server of its own would load another front-end and back-end).
    start_with_token(chrome, secured.url, "right-token")
    wait(chrome, talking, 60)
    assert secured.terminate() == 0
    wait(chrome, lambda d: "Connection lost" in status(d), 15)
    assert chrome.find_element(By.CSS_SELECTOR, "[data-testid=start]").text == "Start"


def test_the_page_and_its_files_are_served_with_a_strict_policy(server: Server) -> None:
    with urllib.request.urlopen(server.url + "/", timeout=5) as response:
        policy = response.headers["Content-Security-Policy"]
        assert 'src="static/app.js"' in response.read().decode()
    assert "default-src 'self'" in policy
    assert f"ws://127.0.0.1:{server.port}" in policy
    with urllib.request.urlopen(server.url + "/static/ogg.js", timeout=5) as response:
        assert "javascript" in response.headers["Content-Type"]
    for missing in ("/static/nothing.js", "/static/..%2Fserver.py", "/static/__init__.py"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server.url + missing, timeout=5)
        assert refused.value.code == 404, missing


class _ForeignPage(BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:
        script = f"""<!doctype html><title>elsewhere</title><script>
window.result = "pending";
const ws = new WebSocket({json.dumps(self.target)});
ws.onopen = () => {{ window.result = "open"; }};
ws.onerror = () => {{ window.result = "error"; }};
</script>"""
        body = script.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_page_from_another_origin_cannot_open_a_session(server: Server, chrome: webdriver.Chrome) -> None:
    before = len(server.sessions())
    refused_before = refused_for_origin(server)
    handler = type("Handler", (_ForeignPage,), {"target": f"ws://127.0.0.1:{server.port}/api/chat?kame=1"})
    foreign = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=foreign.serve_forever, daemon=True)
    thread.start()
    try:
        # Another port is another origin: the browser sends it, and the server answers 403.
        chrome.get(f"http://127.0.0.1:{foreign.server_address[1]}/")
        wait(chrome, lambda d: d.execute_script("return window.result") != "pending", 15)
        assert chrome.execute_script("return window.result") == "error"
    finally:
        foreign.shutdown()
        foreign.server_close()
    assert len(server.sessions()) == before
    assert refused_for_origin(server) == refused_before + 1


def refused_for_origin(server: Server) -> float:
    text = urllib.request.urlopen(server.url + "/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith('kame_refused_total{reason="origin"}'):
            return float(line.split()[-1])
    return 0.0
