"""A `fer-edge serve` on a free loopback port, and Debian's Chromium driven headless, for the page tests."""

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, free_port

SCREENSHOTS = Path(os.environ.get("FER_EDGE_SCREENSHOTS", ROOT / "tests" / "screenshots"))


class Server:
    """`fer-edge serve ARGS` on a free loopback port, or with `default_port` on the one it
    listens on without --web."""

    def __init__(self, *args, env=None, default_port=False):
        self.port = 8080 if default_port else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        web = [] if default_port else ["--web", f"127.0.0.1:{self.port}"]
        self.process = subprocess.Popen([str(Path(sys.executable).parent / "fer-edge"), "serve", *web, *map(str, args)],
                                        stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1)
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(self.process.stderr.read()) from None
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def request(self, path, data=None, headers=None, method=None):
        req = urllib.request.Request(self.url + path, data=data, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def stop(self):
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            self.err = self.process.communicate(timeout=30)[1]
        return self.err


def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        message = "Debian's chromium and chromium-driver are needed (.ci/setup installs them)"
        pytest.fail(message) if os.environ.get("CI") == "true" else pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1400,1000"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


WIDEST = """return Math.max(document.documentElement.scrollWidth,
    ...Array.from(document.querySelectorAll('body *')).filter(e => e.getClientRects().length)
       .map(e => Math.ceil(e.getBoundingClientRect().right)))"""


def at_width(browser, width, height):
    """The page as a phone or a desktop shows it: the viewport `width` CSS pixels wide."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
