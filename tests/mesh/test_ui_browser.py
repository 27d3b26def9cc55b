"""The control plane's web page ``/ui`` in a real headless browser (Debian chromium + chromedriver, Selenium 4).

1. Against ``mesh up --demo`` (registry, control plane, six demo apps and their sidecars as real
   processes, the fixture of ``test_up_demo``): with load sent through productpage's sidecar, the page
   lists the services with their healthy/total instances and the sidecars with their config version,
   and the graph shows the productpage → reviews edge with a nonzero rps.
2. Against a control plane that requires its token for reads: without ``#token=`` the page shows the
   401, with it the page reads the API (the rules table fills).

Skipped only when chromium, chromedriver or selenium is missing and ``CI`` is not set (in CI they must be there).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest

from mesh.control.auth import ControlAuth
from mesh.control.server import ControlServer
from tests.mesh.control.fixtures import start_control
from tests.mesh.test_up_demo import TOKEN, Demo, demo

__all__ = ["demo", "start_control"]

pytestmark = pytest.mark.slow

CHROMEDRIVER = "/usr/bin/chromedriver"
BROWSER_MISSING = [
    what
    for what, present in (
        ("chromium", shutil.which("chromium") is not None),
        ("chromedriver", os.path.exists(CHROMEDRIVER)),
        ("selenium", importlib.util.find_spec("selenium") is not None),
    )
    if not present
]


@pytest.fixture
def browser() -> Iterator[Any]:
    if BROWSER_MISSING:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have a headless browser; missing: {', '.join(BROWSER_MISSING)}")
        pytest.skip(
            f"no headless browser here (missing {', '.join(BROWSER_MISSING)}): apt-get install -y chromium "
            "chromium-driver; pip install selenium"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    """Poll ``check`` (in the browser's thread) until it answers something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"the page never showed {what} (last: {last!r})")


# Read in one script call: the page redraws its tables every 2 s, so element handles go stale.
ROWS_JS = """
const out = {};
for (const row of document.querySelectorAll(`#${arguments[0]} tbody tr`)) {
  const cells = [...row.querySelectorAll("td")].map((td) => td.textContent);
  if (cells.length) out[cells[0]] = cells;
}
return out;
"""
EDGE_JS = """
const edge = document.querySelector(`#graph g.edge[data-source="${arguments[0]}"][data-destination="${arguments[1]}"]`);
return edge ? [Number(edge.getAttribute("data-rps")), edge.querySelector("text").textContent] : [0, ""];
"""


def rows(driver: Any, table: str) -> dict[str, list[str]]:
    """A table's rows by their first cell's text."""
    found: dict[str, list[str]] = driver.execute_script(ROWS_JS, table)
    return found


def edge(driver: Any, source: str, destination: str) -> tuple[float, str]:
    """The graph's edge: its rps (``data-rps``) and its label."""
    rps, label = driver.execute_script(EDGE_JS, source, destination)
    return float(rps), str(label)


class Load:
    """Requests to productpage (through its sidecar's inbound port) in a thread until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with urllib.request.urlopen(self.url, timeout=10) as response:
                response.read()
            self.sent += 1
            time.sleep(0.02)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(15)


def check_demo_page(driver: Any, demo: Demo) -> None:
    with Load(demo.productpage + "?format=json") as load:
        driver.get(f"{demo.control}/ui/#token={TOKEN}")
        assert driver.title == "mesh control plane"
        services = wait_for(
            "the demo services",
            lambda: (
                (r := rows(driver, "services")) and {"productpage", "details", "reviews", "ratings"} <= set(r) and r
            ),
            30,
        )
        assert services["reviews"][1] == "3 / 3"  # healthy / total: v1, v2, v3
        assert services["productpage"][1] == "1 / 1"
        sidecars = wait_for(
            "six ACKed sidecars",
            lambda: (r := rows(driver, "sidecars")) and len(r) == 6 and all(c[4] == "ACKed" for c in r.values()) and r,
            30,
        )
        assert all(cells[2] for cells in sidecars.values())  # the config version each was sent
        # two scrapes (5 s apart, `mesh up`'s default) with traffic between them
        rps, label = wait_for(  # rps > 0 by the wait
            "traffic on productpage → reviews",
            lambda: (found := edge(driver, "productpage.default", "reviews.default"))[0] > 0 and found,
            45,
        )
        assert rps > 0
        assert load.sent > 0
        assert edge(driver, "productpage.default", "details.default")[0] > 0
        assert "rps" in label, label
        assert "p99" in label, label
        edges = rows(driver, "edges")
        assert "productpage.default" in edges
        assert driver.execute_script('return document.getElementById("error").hidden')


def test_the_page_shows_services_sidecars_and_live_traffic_of_a_real_mesh(demo: Demo, browser: Any) -> None:
    check_demo_page(browser, demo)


async def test_with_token_reads_the_page_uses_the_token_from_its_fragment(
    start_control: Callable[..., Any], browser: Any
) -> None:
    control: ControlServer = await start_control(auth=ControlAuth("browser-token", token_reads=True))
    rule = (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\n"
        "spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}\n"
    )
    async with (
        aiohttp.ClientSession() as http,
        http.put(
            f"{control.url}/v1/mesh/config",
            data=rule,
            headers={"Content-Type": "application/yaml", "X-Mesh-Token": "browser-token"},
        ) as r,
    ):
        assert r.status == 200, await r.text()

    def without_then_with_token() -> None:
        browser.get(f"{control.url}/ui/")
        error = wait_for("the 401", lambda: browser.find_element("id", "error").text, 15)
        assert "401" in error
        browser.get(f"{control.url}/ui/#token=browser-token")
        browser.refresh()  # a fragment change alone does not reload the page
        rules = wait_for("the rule", lambda: rows(browser, "rules"), 15)
        assert rules["DestinationRule"][1] == "default/reviews"
        assert rules["DestinationRule"][3] == "valid"
        assert not browser.find_element("id", "error").is_displayed()

    await asyncio.to_thread(without_then_with_token)
