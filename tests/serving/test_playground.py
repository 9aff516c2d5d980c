"""The playground page of `textrnn serve` (serving/playground/), in a real headless Chromium.

The browser tests (slow) drive Debian's `chromium` through `chromium-driver`
with Selenium against a real server holding the three task exports: they
classify a sentence, stream a generation (and stop one), translate a sentence
and find the attention heatmap drawn, and save a screenshot of each under the
test's temporary directory. They skip, saying why, only where Chromium is not
installed (`make test-slow` installs it as root with apt). The fast test checks
the page's routes over HTTP and `--no-playground`.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .helpers import Exports, ServerProcess, lm_reference, prometheus_counters, start_server

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)
WAIT = 120  # seconds for anything the page waits on (a shared, busy CI machine)


def _get(server: ServerProcess, path: str) -> tuple[int, dict[str, str], bytes]:
    url = f"http://127.0.0.1:{server.rest_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_the_page_is_served_and_off_with_no_playground(servers: dict[str, ServerProcess]):
    on, off = servers["main"], servers["timeout"]  # "timeout" runs with --no-playground
    status, headers, page = _get(on, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<script src="/playground/app.js">' in page
    assert "default-src 'self'" in headers["Content-Security-Policy"]  # nothing from elsewhere
    for asset, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        status, headers, body = _get(on, f"/playground/{asset}")
        assert status == 200 and headers["Content-Type"].startswith(kind) and body
        assert b"http://" not in body and b"https://" not in body  # no CDN
    status, _, body = _get(on, "/playground/models")
    assert status == 200 and {"sentiment", "classifier"} <= set(json.loads(body)["models"])
    for path in ("/", "/playground/app.js", "/playground/models"):
        status, _, body = _get(off, path)
        assert status == 404 and "--no-playground" in json.loads(body)["error"]
    assert _get(off, "/v1/models/sentiment")[0] == 200  # the API is still there


# ----------------------------------------------------------------------------- in Chromium


@pytest.fixture(scope="module")
def playground_server(exports: Exports, task_exports: Exports, tmp_path_factory):
    """A server over the three task exports: sentiment, lm and translation."""
    base = tmp_path_factory.mktemp("playground") / "models"
    shutil.copytree(exports.base / "sentiment", base / "sentiment")
    for task in task_exports.tasks:
        shutil.copytree(task_exports.base / task, base / task)
    server = start_server(base, "--poll-seconds", "0", "--grpc-port", "-1").wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed: pip install -e '.[dev]'"
    )
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip(
            "Chromium is not installed (Debian's chromium and chromium-driver; "
            "`make test-slow` installs them when run as root with apt)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=driver_path)
    )
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    yield driver
    driver.quit()


def _wait(browser, condition, message: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT, poll_frequency=0.1).until(condition, message)


def _open_model(browser, server: ServerProcess, name: str) -> None:
    from selenium.webdriver.common.by import By

    if not browser.current_url.startswith(f"http://127.0.0.1:{server.rest_port}/"):
        browser.get(f"http://127.0.0.1:{server.rest_port}/")
    button = _wait(
        browser,
        lambda b: b.find_element(By.CSS_SELECTOR, f'button.model[data-model="{name}"]'),
        f"the page never listed the model {name!r}",
    )
    button.click()


def _fill(browser, element_id: str, value: Any) -> None:
    from selenium.webdriver.common.by import By

    field = browser.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(str(value))


def _shown_error(browser) -> str:
    from selenium.webdriver.common.by import By

    box = browser.find_element(By.ID, "error")
    return box.text if box.is_displayed() else ""


@pytest.mark.slow
def test_playground_classifies_a_sentence(browser, playground_server, tmp_path: Path):
    from selenium.webdriver.common.by import By

    _open_model(browser, playground_server, "sentiment")
    _fill(browser, "classify-text", "a good film")
    browser.find_element(By.ID, "classify-button").click()
    bars = _wait(
        browser,
        lambda b: b.find_elements(By.CSS_SELECTOR, "#classify-result .bar-row") or None,
        "no class bars were drawn",
    )
    assert len(bars) == 2 and _shown_error(browser) == ""
    label = browser.find_element(By.CSS_SELECTOR, "#classify-result .label strong").text
    assert label in {bar.find_element(By.CLASS_NAME, "class-name").text for bar in bars}
    browser.save_screenshot(str(tmp_path / "classify.png"))
    assert (tmp_path / "classify.png").stat().st_size > 0


@pytest.mark.slow
def test_playground_streams_a_generation_and_stops_one(
    browser, playground_server, task_in_process, lm_export, tmp_path: Path
):
    from selenium.webdriver.common.by import By

    _open_model(browser, playground_server, "lm")
    knobs = {"max_tokens": 80, "temperature": 0.8, "top_k": 0, "top_p": 0.95, "seed": 4}
    _fill(browser, "lm-prompt", "the cat")
    for knob, value in knobs.items():
        _fill(browser, f"lm-{knob.replace('_', '-')}", value)
    browser.find_element(By.ID, "lm-generate").click()
    output = browser.find_element(By.ID, "lm-output")
    _wait(browser, lambda b: output.get_attribute("data-done") == "true", "the stream never ended")
    expected = lm_reference(task_in_process, "generate", prompt=["the cat"], **knobs)["text"][0]
    shown = browser.execute_script("return document.getElementById('lm-output').textContent")
    assert shown == "the cat" + expected.decode("utf-8")  # the prompt, then the streamed text
    assert "tokens in" in browser.find_element(By.ID, "lm-status").text
    browser.save_screenshot(str(tmp_path / "generate.png"))

    # A long generation, stopped from the page: the server's work stops with it.
    _fill(browser, "lm-max-tokens", 10000)
    browser.find_element(By.ID, "lm-generate").click()
    _wait(
        browser,
        lambda b: (
            len(b.execute_script("return document.getElementById('lm-output').textContent"))
            > len("the cat") + 5
        ),
        "no text streamed in",
    )
    browser.find_element(By.ID, "lm-stop").click()
    _wait(browser, lambda b: b.find_element(By.ID, "lm-status").text == "stopped", "not stopped")
    deadline = time.monotonic() + WAIT
    while prometheus_counters(playground_server)["textrnn_serving_streams_active"]:
        assert time.monotonic() < deadline, "the stopped stream kept generating"
        time.sleep(0.1)

    # A bad knob: the API's own message on the page.
    _fill(browser, "lm-max-tokens", 10)
    _fill(browser, "lm-top-p", 0)
    browser.find_element(By.ID, "lm-generate").click()
    message = _wait(browser, lambda b: _shown_error(b) or None, "no error shown")
    assert "'top_p' must be in (0, 1]" in message


@pytest.mark.slow
def test_playground_translates_and_draws_the_attention(
    browser, playground_server, translation_export, tmp_path: Path
):
    from selenium.webdriver.common.by import By

    _open_model(browser, playground_server, "translation")
    _fill(browser, "mt-source", "zwei hunde spielen .")
    _fill(browser, "mt-beam", 3)
    browser.find_element(By.ID, "mt-translate").click()
    heatmap = _wait(
        browser,
        lambda b: (
            b.find_element(By.ID, "mt-heatmap")
            if b.find_element(By.ID, "mt-figure").is_displayed()
            else None
        ),
        "no heatmap",
    )
    assert _shown_error(browser) == ""
    hypotheses = browser.find_elements(By.CSS_SELECTOR, "#mt-nbest li")
    assert 1 <= len(hypotheses) <= 3
    assert int(heatmap.get_attribute("data-cells")) > 0
    painted = browser.execute_script(
        """const c = document.getElementById('mt-heatmap');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] < 200 || d[i + 1] < 200) n++;
        return n;"""
    )
    assert painted > 100  # cells and labels drawn, not a blank canvas
    browser.save_screenshot(str(tmp_path / "translate.png"))
    assert (tmp_path / "translate.png").stat().st_size > 0
