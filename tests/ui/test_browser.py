"""The web UI in a real browser: Debian's chromium driven by Playwright, against
`chargebrain run` as a process. One browser and one server for the module; each test
opens a fresh page. Every page is checked for JavaScript errors and for requests that
would leave the machine.

Order matters in one place: the last tests set an admin password (the public view and
the log-ins), the ones before run as the admin of a server without one.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, expect, sync_playwright

from tests.e2e.server_process import Server

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Site:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.base = f"http://127.0.0.1:{server.http_port}"
        self.password = ""

    def call(self, query: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base}/cnf?{query}", data=data)
        if self.password:
            token = base64.b64encode(f"admin:{self.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read().decode()
        return json.loads(text) if resp.headers.get_content_type() == "application/json" else text


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    server = Server(tmp_path_factory.mktemp("ui") / "data", "--http", "127.0.0.1:0")
    try:
        s = Site(server)
        s.call("cmd=set_device", {"devices": [{"dev_type": "evse_ajax", "name": "Garage"}]})
        s.call("cmd=set_device", {"devices": [{"dev_type": "meter_ajax", "name": "Grid",
                                                "role": 3}]})
        yield s
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


class Watched:
    """A page and what it did wrong: script errors, console errors, outside requests."""

    def __init__(self, page: Page, base: str) -> None:
        self.page = page
        self.errors: list[str] = []
        self.outside: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", self._console)
        page.on("request", lambda req: self._request(req, base))

    def _console(self, msg: ConsoleMessage) -> None:
        # A 4xx answer the page expects (a refused value shown at its field) is logged by
        # the browser as a failed resource; anything else in red is a fault of the page.
        if msg.type == "error" and "Failed to load resource" not in msg.text:
            self.errors.append(msg.text)

    def _request(self, req: Request, base: str) -> None:
        if not (req.url.startswith(base + "/") or req.url.startswith(("blob:", "data:"))):
            self.outside.append(req.url)

    def check(self) -> None:
        assert self.errors == []
        assert self.outside == []


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    watched = Watched(context.new_page(), site.base)
    try:
        yield watched
        watched.check()
    finally:
        context.close()


def garage(site: Site) -> str:
    info = site.call("cmd=get_dev_info")
    return next(d["dev_id"] for d in info["devices"] if d["name"] == "Garage")


def axe_violations(page: Page) -> list[dict[str, Any]]:
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


def test_tile_updates_live_and_shows_communication_errors(page: Watched, site: Site) -> None:
    p = page.page
    dev = garage(site)
    p.goto(site.base + "/")
    tile = p.locator(f"article[data-dev={dev}]")
    expect(tile).to_have_class(re.compile("com-err"))  # nothing pushed yet
    expect(tile).to_contain_text("Communication error since")
    expect(p.locator("#summary")).to_contain_text("Load management")
    site.call(f"cmd=set_ajax_evse&dev_id={dev}&state=3&current=7000,7000,7000&power_w=4830")
    expect(tile).not_to_have_class(re.compile("com-err"))
    expect(tile).to_contain_text("Charging")
    expect(tile).to_contain_text("4.83 kW")
    expect(tile).to_contain_text("7.0 / 7.0 / 7.0 A")
    site.call(f"cmd=set_ajax_evse&dev_id={dev}&state=3&current=9000,9000,9000&power_w=6210")
    expect(tile).to_contain_text("6.21 kW")  # no reload: the stream brought it
    assert axe_violations(p) == []


def test_override_a_limit_from_the_tile(page: Watched, site: Site) -> None:
    p = page.page
    dev = garage(site)
    p.goto(site.base + "/")
    p.locator(f"article[data-dev={dev}] button").click()
    p.fill("#ov-limit", "10")
    p.click("#ov-set")
    expect(p.locator("#ov-active")).to_contain_text("10.0 A")
    state = next(d for d in site.call("cmd=get_dev_info")["devices"] if d["dev_id"] == dev)
    assert state["ov_cur"] == 10000
    p.click("#ov-charge")
    expect(p.locator("#ov-charge")).to_have_text("Allow charging")
    assert axe_violations(p) == []


def test_add_a_device_and_see_a_refusal_at_its_field(page: Watched, site: Site) -> None:
    p = page.page
    p.goto(site.base + "/#/config")
    p.select_option("#new-dev-type", "meter_ajax")
    p.click("#add-device")
    form = p.locator("dialog .schema-form")
    form.locator("[data-field=name] input").fill("Heat pump")
    form.locator("[data-field=role] input").fill("1")
    form.locator("[data-field=group] input").fill("77")  # in range, but no such group
    p.click("dialog button[type=submit]")
    expect(form.locator("[data-field=group] .field-error")).to_contain_text("77")
    form.locator("[data-field=group] input").fill("0")
    p.click("dialog button[type=submit]")
    expect(p.locator("#cfg-devices table")).to_contain_text("Heat pump")
    names = [d["name"] for d in site.call("cmd=get_devices")]
    assert "Heat pump" in names
    assert axe_violations(p) == []


def test_change_a_site_limit(page: Watched, site: Site) -> None:
    p = page.page
    p.goto(site.base + "/#/config")
    field = p.locator("#site-form [data-field=max_total_current] input")
    field.fill("25000")
    p.click("#site-save")
    expect(p.locator("#toast")).to_contain_text("Saved")
    assert site.call("cmd=get_params")["max_total_current"] == 25000


def test_add_a_user_with_an_rfid(page: Watched, site: Site) -> None:
    p = page.page
    dev = garage(site)
    p.goto(site.base + "/#/users")
    p.click("#add-user")
    p.fill("#u-name", "Alice")
    p.check(f".u-evse[value={dev}]")
    p.click("#add-card")
    p.locator(".card-row .c-id").fill("AB12CD")
    p.locator(".card-row .c-name").fill("Key fob")
    p.click("#user-save")
    expect(p.locator("#user-list")).to_contain_text("Alice")
    alice = next(u for u in site.call("cmd=get_users") if u["name"] == "Alice")
    assert alice["rfids"][0]["id"] == "AB12CD"
    assert alice["dev_ids"] == [dev]
    assert axe_violations(p) == []


def test_download_transactions(page: Watched, site: Site) -> None:
    p = page.page
    dev = garage(site)
    site.call(f"cmd=set_ajax_evse&dev_id={dev}&state=1&current=0,0,0")  # unplugged: one ends
    p.goto(site.base + "/#/transactions")
    expect(p.locator("#tx-count")).to_contain_text("1 transactions")
    p.select_option("#tx-evse", dev)
    with p.expect_download() as info:
        p.click("#tx-csv")
    text = Path(info.value.path()).read_text(encoding="utf-8")
    lines = text.strip().splitlines()
    assert lines[0].startswith("id,dev_id,user_id")
    assert len(lines) == 2 and f",{dev}," in lines[1]


def test_rule_with_a_formula_error(page: Watched, site: Site) -> None:
    p = page.page
    dev = garage(site)
    p.goto(site.base + "/#/rules")
    p.select_option("#rules-target", f"E:{dev}")
    p.click("#add-rule")
    rule = p.locator(".rule").first
    rule.locator(".r-expr").fill("8000 + ")
    expect(rule.locator(".field-error")).to_contain_text("expr")
    expect(rule.locator(".r-expr")).to_have_attribute("aria-invalid", "true")
    rule.locator(".r-expr").fill("date.hour >= 8 ? 8000 : 0")
    expect(p.locator("#rules-status")).to_have_text("All rules are valid.")
    p.click("#rules-save")
    expect(p.locator("#toast")).to_contain_text("Saved")
    stored = next(d for d in site.call("cmd=get_devices") if d["dev_id"] == dev)
    assert stored["charging_rules"][0]["expr"] == "date.hour >= 8 ? 8000 : 0"


def test_history_and_log_pages(page: Watched, site: Site) -> None:
    p = page.page
    p.goto(site.base + "/#/history")
    expect(p.locator("#h-step")).to_contain_text("one value every")
    expect(p.locator("#h-chart canvas")).to_have_count(1)
    p.goto(site.base + "/#/log")
    site.call("cmd=set_device", {"devices": [{"dev_type": "meter_ajax", "name": "Logged"}]})
    p.select_option("#log-level", "DEBUG")
    expect(p.locator("#log-lines")).not_to_be_empty()
    assert axe_violations(p) == []


def test_modbus_test_page_reads_writes_and_shows_a_device_error(page: Watched,
                                                                site: Site) -> None:
    # The server's own controller is the device under test (its Modbus TCP port).
    p = page.page
    p.goto(site.base + "/#/modbus")
    p.fill("#mb-addr", f"127.0.0.1:{site.server.modbus_port}")
    p.fill("#mb-id", "1")
    p.fill("#mb-reg", "8016")
    p.select_option("#mb-type", "s")
    p.fill("#mb-cnt", "8")
    p.click("#mb-read")
    expect(p.locator("#mb-result")).to_contain_text("cFos Power Brain")
    p.select_option("#mb-type", "w")
    p.fill("#mb-cnt", "1")
    p.fill("#mb-reg", "0x1F9D")  # 8093: the EVSE's current limit in 0.1 A
    p.fill("#mb-val", "100")
    p.click("#mb-write")
    expect(p.locator("#mb-result")).to_have_text('"ok"')
    p.click("#mb-read")
    expect(p.locator("#mb-result")).to_have_text("100")
    p.fill("#mb-reg", "1")  # no such register: the device's exception, as a 424
    p.click("#mb-read")
    expect(p.locator("#mb-result")).to_contain_text("Error")
    expect(p.locator("#mb-result")).to_have_class(re.compile("error"))
    assert axe_violations(p) == []


def test_german_on_a_phone(browser: Browser, site: Site) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  has_touch=True)
    try:
        watched = Watched(context.new_page(), site.base)
        p = watched.page
        p.goto(site.base + "/")
        p.select_option("#lang", "de")
        expect(p.locator("h1")).to_have_text("Übersicht")
        expect(p.locator("html")).to_have_attribute("lang", "de")
        expect(p.locator("article.tile").first).to_be_visible()
        for view in ("", "config", "users", "transactions", "rules", "history"):
            p.goto(f"{site.base}/#/{view}")
            p.wait_for_timeout(300)
            width = p.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, view
        assert axe_violations(p) == []
        watched.check()
    finally:
        context.close()


def test_public_view_and_log_ins(page: Watched, site: Site) -> None:
    p = page.page
    site.call("cmd=change_admin_pwd&old_pwd=&new_pwd=s3cret-pw")
    site.password = "s3cret-pw"
    dev = garage(site)
    p.goto(site.base + "/")
    expect(p.locator("#who")).to_have_text("Public view (read only)")
    expect(p.locator(f"article[data-dev={dev}]")).to_be_visible()
    expect(p.locator(f"article[data-dev={dev}] button")).to_have_count(0)
    expect(p.locator("#nav")).not_to_contain_text("Configuration")
    # A user with their PIN: their EVSE, their transactions, their account.
    p.click("#login-btn")
    p.fill("#login-user", "AB12CD")
    p.locator("#login-user").press("Enter")
    expect(p.locator("#who")).to_have_text("User Alice")
    expect(p.locator(f"article[data-dev={dev}] button")).to_have_count(1)
    expect(p.locator("#nav")).to_contain_text("My account")
    expect(p.locator("#nav")).not_to_contain_text("Configuration")
    p.click("#login-btn")  # log out
    expect(p.locator("#who")).to_have_text("Public view (read only)")
    p.click("#login-btn")
    p.fill("#login-pwd", "wrong")
    p.locator("#login-pwd").press("Enter")
    expect(p.locator("dialog .error")).to_contain_text("failed")
    p.fill("#login-pwd", "s3cret-pw")
    p.locator("#login-pwd").press("Enter")
    expect(p.locator("#who")).to_have_text("Admin")
    p.goto(site.base + "/#/config")
    expect(p.locator("#cfg-devices")).to_contain_text("Garage")
    # The page the credential check of Home Assistant asks for is unchanged.
    try:
        urllib.request.urlopen(site.base + "/ui/en/sim.htm", timeout=10)
        raise AssertionError("sim.htm answered without the password")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401
