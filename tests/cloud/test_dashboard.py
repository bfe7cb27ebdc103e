"""The dashboard in a real headless Chromium (Debian's chromium and chromium-driver,
driven with selenium): the boards with their true states, a change on MQTT shown
without a reload, a failing check's remedy, a command sent from a button and answered.
The last screen is saved to build/test-artifacts/dashboard.png."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from kedge.wire import FirstBootProgress
from tests.harness.browser import MISSING, chromium, rows
from tests.harness.cloud_api import Api
from tests.harness.fleet import Board, checks, health
from tests.harness.wait import wait_for

ARTIFACTS = Path(
    os.environ.get("KEDGE_TEST_ARTIFACTS", Path(__file__).parents[2] / "build" / "test-artifacts")
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail(MISSING)
    with chromium(tmp_path / "chromium") as driver:
        yield driver


def state_of(browser: WebDriver, node: str) -> str | None:
    return rows(browser).get(node)


def test_the_dashboard_follows_the_fleet_live(
    api: Api,
    boards: dict[str, Board],
    browser: WebDriver,
) -> None:
    one, two = boards["rk3000-1"], boards["rk3000-2"]
    one.send("health", health(one.node, cpu=20.0, temp=48.0))
    one.send("checks", checks(one.node))
    two.send("health", health(two.node, cpu=35.0))
    two.send("checks", checks(two.node, failing=("clock",)))
    wait_for(lambda: api.call("GET", "/api/v1/nodes?failing=clock", token=api.token)[2]["total"] == 1,
             timeout=20, what="the reports stored")  # fmt: skip

    browser.get(f"{api.url}/#token={api.token}")
    wait_for(lambda: state_of(browser, one.node) == "online" and state_of(browser, two.node) == "online",
             timeout=30, what="both boards online in the table")  # fmt: skip
    assert "token=" not in browser.current_url  # taken out of the address bar
    wait_for(
        lambda: "live" in browser.find_element(By.ID, "live").text,
        timeout=30,
        what="the live stream",
    )

    # A failing check, with its remedy one click away.
    summary = browser.find_element(By.CSS_SELECTOR, f'tr[data-node="{two.node}"] details summary')
    assert summary.text == "1 failing: clock"
    summary.click()
    wait_for(lambda: "Remedy: fix clock" in browser.find_element(
        By.CSS_SELECTOR, f'tr[data-node="{two.node}"] details').text, timeout=20, what="the remedy")  # fmt: skip

    # A first boot stuck on a check: the join column says where and what to do.
    at = datetime.now(UTC)
    two.send("firstboot", FirstBootProgress(
        node=two.node, phase="fixing", state="blocked", since=at, started_at=at,
        summary="clock: clock is wrong", remedy="fix clock", check="clock"))  # fmt: skip
    cell = f'tr[data-node="{two.node}"] td[data-firstboot="fixing"]'
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, cell), timeout=30,
             what="the first boot in the join column, live")  # fmt: skip
    assert browser.find_element(By.CSS_SELECTOR, cell).text.splitlines() == [
        "first boot: fixing (blocked)", "clock: fix clock"]  # fmt: skip

    # A change on MQTT, shown without a reload: a board drops off and its will says so.
    one.vanish()
    wait_for(
        lambda: state_of(browser, one.node) == "offline",
        timeout=30,
        what="offline without a reload",
    )
    assert browser.execute_script("return performance.getEntriesByType('navigation').length") == 1

    # A command from its button, answered by the board.
    check = browser.find_element(
        By.CSS_SELECTOR, f'tr[data-node="{two.node}"] button[data-action="check"]'
    )
    assert browser.find_element(By.CSS_SELECTOR, f'tr[data-node="{two.node}"] button[data-action="reset"]'
                                ).get_attribute("disabled") == "true"  # fmt: skip
    check.click()
    wait_for(lambda: two.commands, timeout=20, what="the command at the board")
    two.answer(two.commands[-1], ok=True)
    wait_for(lambda: "check → done" in browser.find_element(By.ID, "output").text, timeout=30,
             what="the answer on the page")  # fmt: skip

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))


def test_a_wrong_token_asks_again(api: Api, browser: WebDriver) -> None:
    browser.get(f"{api.url}/#token=wrong")
    wait_for(
        lambda: browser.find_element(By.ID, "login").is_displayed(),
        timeout=20,
        what="the login form",
    )
    assert browser.find_element(By.ID, "login-error").text == "That token was refused."
    browser.find_element(By.ID, "token").send_keys(api.token)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    wait_for(
        lambda: browser.find_element(By.ID, "fleet").is_displayed(), timeout=20, what="the fleet"
    )
    assert browser.find_element(By.ID, "empty").is_displayed()  # no board has reported
