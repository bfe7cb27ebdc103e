"""Headless Chromium (Debian's chromium and chromium-driver) driven with selenium: the
dashboard tests' browser, and the demo's screenshot."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.harness.wait import wait_for

# Chromium on a closed network: no background connections, no first-run work.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1500,760")  # fmt: skip
MISSING = "chromium and chromium-driver are missing: run scripts/setup-host (make test does)"


@contextmanager
def chromium(profile: Path) -> Iterator[WebDriver]:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        raise RuntimeError(MISSING)
    options = Options()
    options.binary_location = shutil.which("chromium") or ""
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or ""))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def rows(browser: WebDriver) -> dict[str, str]:
    """node -> its row's state in the fleet table."""
    try:
        found = browser.find_elements(By.CSS_SELECTOR, "tr[data-node]")
        return {
            r.get_attribute("data-node") or "": r.get_attribute("data-state") or "" for r in found
        }
    except WebDriverException:
        return {}


def verify_job(browser: WebDriver) -> str:
    """The job id of the verify result the page shows ("" before one)."""
    try:
        return browser.find_element(By.ID, "verify-summary").get_attribute("data-job") or ""
    except WebDriverException:
        return ""


def save_dashboard(url: str, target: Path, boards: int) -> list[str]:
    """Open the dashboard, wait for `boards` rows and the last verify result, run verify
    again from its button and wait for the new result to arrive live (no reload), save
    the picture. Returns what the page says, line by line."""
    with (
        tempfile.TemporaryDirectory(prefix="kedge-chromium-") as profile,
        chromium(Path(profile)) as b,
    ):
        b.get(url)
        wait_for(
            lambda: len(rows(b)) >= boards, timeout=30, what=f"{boards} boards on the dashboard"
        )
        first = wait_for(lambda: verify_job(b), timeout=30, what="the last verify result")
        b.find_element(By.ID, "verify-run").click()
        wait_for(
            lambda: verify_job(b) not in ("", first), timeout=120, what="a new verify result, live"
        )
        if b.execute_script("return performance.getEntriesByType('navigation').length") != 1:
            raise RuntimeError("the page reloaded")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not b.save_screenshot(str(target)):
            raise RuntimeError(f"cannot save the dashboard's picture to {target}")
        # Read again until whole: a live update can replace a row while it is being read.
        table = wait_for(lambda: r if len(r := rows(b)) >= boards else None, timeout=30,
                         what="the table read whole")  # fmt: skip
        seen = [f"{node}: {state}" for node, state in sorted(table.items())]
        seen.append(b.find_element(By.ID, "verify-summary").text.rsplit(" · ", 1)[0])
        seen += [li.text for li in b.find_elements(By.CSS_SELECTOR, "#verify-nodes li")]
        return seen
