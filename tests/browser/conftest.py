"""A real stack (API, Redis, a worker with llama-server and the tiny image pipeline) and headless
Chromium driving the console on it.

These tests run under ``make test-browser`` (which installs Debian's chromium and sets
VELESIO_BROWSER_TESTS=1), not in ``make test``: a browser costs more than the rest of a suite run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.cdp import Browser, Page, find_chromium
from tests.support.processes import Stack, start_stack

KEY_SECRET = "console-test-key-secret-" + "x" * 32
#: Where screenshots are copied for a person to look at (printed by the tests).
SCREENSHOTS = Path(os.environ.get("VELESIO_SCREENSHOTS", Path(tempfile.gettempdir()) / "velesio-console-screenshots"))


def pytest_collection_modifyitems(config, items) -> None:
    if os.environ.get("VELESIO_BROWSER_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="browser tests run with `make test-browser` (VELESIO_BROWSER_TESTS=1)")
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="module")
def console_stack(redis_server, tiny_model, sd_models, logs_dir) -> Iterator[Stack]:
    """One llama-server slot, so that a second chat waits in the queue while the first runs."""
    running = start_stack(
        redis_server.url(12), tiny_model, logs_dir, name="console", LLAMA_SLOTS="1", KEY_SECRET=KEY_SECRET,
        **sd_models.env(),
    )  # fmt: skip
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[Browser]:
    chromium = find_chromium()
    if chromium is None:
        pytest.fail("no chromium on PATH: `make test-browser` installs Debian's")
    running = Browser(chromium, tmp_path_factory.mktemp("chromium-profile"))
    yield running
    running.close()


@pytest.fixture(scope="module")
def page(browser) -> Page:
    return browser.new_page()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("screenshots")
    yield folder
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for png in folder.glob("*.png"):
        shutil.copy(png, SCREENSHOTS / png.name)
    print(f"\nconsole screenshots: {SCREENSHOTS}")
