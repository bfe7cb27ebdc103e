"""The dashboard in a real headless Chromium (Debian's chromium and chromium-driver,
driven with selenium): the boards with their true states, a change on MQTT shown
without a reload, a failing check's remedy, a command sent from a button and answered.
The last screen is saved to build/test-artifacts/dashboard.png."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from kedge.wire import FirstBootProgress
from tests.harness.browser import MISSING, chromium, rows
from tests.harness.cloud_api import Api
from tests.harness.fleet import Board, checks, health
from tests.harness.flood import enroll_body, request
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
    wait_for(
        lambda: api.call("GET", "/api/v1/nodes?failing=clock", token=api.token)[2]["total"] == 1,
        timeout=20,
        what="the reports stored",
    )

    browser.get(f"{api.url}/#token={api.token}")
    wait_for(
        lambda: state_of(browser, one.node) == "online" and state_of(browser, two.node) == "online",
        timeout=30,
        what="both boards online in the table",
    )
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
    wait_for(
        lambda: (
            "Remedy: fix clock"
            in browser.find_element(By.CSS_SELECTOR, f'tr[data-node="{two.node}"] details').text
        ),
        timeout=20,
        what="the remedy",
    )

    # A first boot stuck on a check: the join column says where and what to do.
    at = datetime.now(UTC)
    two.send(
        "firstboot",
        FirstBootProgress(
            node=two.node,
            phase="fixing",
            state="blocked",
            since=at,
            started_at=at,
            summary="clock: clock is wrong",
            remedy="fix clock",
            check="clock",
        ),
    )
    cell = f'tr[data-node="{two.node}"] td[data-firstboot="fixing"]'
    wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, cell),
        timeout=30,
        what="the first boot in the join column, live",
    )
    assert browser.find_element(By.CSS_SELECTOR, cell).text.splitlines() == [
        "first boot: fixing (blocked)",
        "clock: fix clock",
    ]

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
    assert (
        browser.find_element(
            By.CSS_SELECTOR, f'tr[data-node="{two.node}"] button[data-action="reset"]'
        ).get_attribute("disabled")
        == "true"
    )
    check.click()
    wait_for(lambda: two.commands, timeout=20, what="the command at the board")
    two.answer(two.commands[-1], ok=True)
    wait_for(
        lambda: "check → done" in browser.find_element(By.ID, "output").text,
        timeout=30,
        what="the answer on the page",
    )

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


def test_waiting_boards_are_refused_and_approved_and_a_fast_clock_shows(
    api: Api, boards: dict[str, Board], browser: WebDriver
) -> None:
    """Issue 25: the dashboard lists the boards parked for approval, with approve and
    refuse; and a board whose reports are dated ahead of the API's clock is flagged."""
    status, _, made = api.call(
        "POST", "/api/v1/enrollment-secrets", {"approval": "pending"}, token=api.token
    )
    assert status == 201
    for node, source in (("rk3000-8", "127.0.4.1"), ("rk3000-9", "127.0.4.2")):
        assert (
            request(
                api.url + "/api/v1/enroll", data=enroll_body(made["secret"], node), source=source
            )
            == 202
        )
    one = boards["rk3000-1"]
    one.send("health", health(one.node, at=datetime.now(UTC) + timedelta(hours=2)))

    browser.get(f"{api.url}/#token={api.token}")
    item = 'li[data-pending="{}"]'
    wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, item.format("rk3000-9")),
        timeout=30,
        what="the waiting boards listed",
    )
    assert "2 waiting for approval" in browser.find_element(By.ID, "pending").text
    browser.find_element(
        By.CSS_SELECTOR, item.format("rk3000-9") + ' button[data-decide="refuse"]'
    ).click()
    browser.switch_to.alert.accept()
    wait_for(
        lambda: "refused" in browser.find_element(By.CSS_SELECTOR, item.format("rk3000-9")).text,
        timeout=20,
        what="refused on the page",
    )
    browser.find_element(
        By.CSS_SELECTOR, item.format("rk3000-8") + ' button[data-decide="approve"]'
    ).click()
    wait_for(
        lambda: "approved" in browser.find_element(By.CSS_SELECTOR, item.format("rk3000-8")).text,
        timeout=20,
        what="approved on the page",
    )
    waiting = {
        p["node_name"]: p for p in api.call("GET", "/api/v1/boards/pending", token=api.token)[2]
    }
    assert (waiting["rk3000-9"]["refused"], waiting["rk3000-8"]["approved"]) == (True, True)

    flag = f'tr[data-node="{one.node}"] .clock-ahead'
    wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, flag), timeout=30, what="the clock flag"
    )
    assert browser.find_element(By.CSS_SELECTOR, flag).text.startswith("clock ahead 7")
