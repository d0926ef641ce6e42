"""The dashboard in real headless Chromium (Debian's /usr/bin/chromium, driven by
playwright-python; no browser is downloaded), against a real mitmdump with the addon and a
real backend. Screenshots of each page go to test-artifacts/ (ignored by git)."""

from __future__ import annotations

import os
import shutil
import sys
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import ROOT, Proc, free_port
from live_helpers import Served, eventually

CHROMIUM = os.environ.get("MOCKSTORE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
WAIT = 5000  # ms: a deadline for what should show within about a second, not a speed test

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (.ci/run installs it)")


@pytest.fixture(scope="module")
def world(tmp_path_factory, confdir):
    """A backend, and mitmdump in front of it in learn mode with the dashboard on a free port."""
    tmp = tmp_path_factory.mktemp("dashboard")
    api_port = free_port()
    api = Proc([sys.executable, str(ROOT / "tests" / "backend.py"), str(api_port)], api_port)
    entities = tmp / "entities.yaml"
    entities.write_text("resources:\n  notes:\n    id: integer\n    fields: {text: string}\n"
                        "    seed: [{id: 1, text: first}, {id: 2, text: second}]\n")
    p = Served("mitmdump", tmp / "m.db", confdir, tmp / "mitmdump.log", upstream=f"http://127.0.0.1:{api_port}",
               admin="127.0.0.1:0", options={"mock_entities": entities})
    base, token = p.admin_url()
    with httpx.Client(base_url=p.url, timeout=10, trust_env=False) as c:
        for i in range(1, 9):
            assert c.get(f"/users/{i}").status_code == 200
    admin = httpx.Client(base_url=base, timeout=10, trust_env=False, headers={"Authorization": f"Bearer {token}"})
    state = {"proxy": p, "api": api, "api_port": api_port, "base": base, "token": token, "admin": admin}
    yield state
    admin.close()
    print(p.stop()[-4000:])
    state["api"].stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM,
                               args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


@pytest.fixture
def page(browser, world):
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(f"{world['base']}/?token={world['token']}")
    pg.wait_for_selector("#status.live", timeout=WAIT)
    yield pg
    context.close()
    assert not errors, errors


def shot(pg, name: str) -> None:
    pg.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def proxy_get(world, path: str) -> httpx.Response:
    with httpx.Client(base_url=world["proxy"].url, timeout=10, trust_env=False) as c:
        return c.get(path)


def test_a_request_through_the_proxy_appears_in_the_traffic_table(page, world):
    assert "token" not in page.url, "the token leaves the address bar (the cookie keeps it)"
    assert proxy_get(world, "/users/42?from=test").status_code == 200
    row = page.locator("#traffic tbody tr", has_text="/users/42?from=test")
    row.wait_for(timeout=WAIT)
    cells = row.first.locator("td").all_inner_texts()
    assert cells[1:7] == ["GET", f"127.0.0.1:{world['api_port']}", "/users/42?from=test", "/users/{id}", "200", "real"]
    shot(page, "deck")


def test_switching_the_mode_on_the_page_changes_the_next_answer(page, world):
    assert "x-mockstore-source" not in proxy_get(world, "/users/3").headers  # learn: forwarded
    page.click("#modes button[data-mode=mock]")
    page.wait_for_selector("#modes button.active[data-mode=mock]", timeout=WAIT)
    assert proxy_get(world, "/users/3").headers.get("x-mockstore-source"), "mock mode: answered by mockstore"
    page.click("#modes button[data-mode=learn]")
    page.wait_for_selector("#modes button.active[data-mode=learn]", timeout=WAIT)
    assert "x-mockstore-source" not in proxy_get(world, "/users/3").headers


def test_a_chaos_toggle_turned_off_stops_that_fault(page, world):
    world["admin"].post("/admin/chaos/rules", json={"id": "boom", "template": "/ok/*", "effect": "error", "status": 503})
    toggle = page.locator("tr[data-rule=boom] input.rule-toggle")
    toggle.wait_for(timeout=WAIT)
    assert proxy_get(world, "/ok/x").status_code == 503
    page.locator("tr[data-rule=boom] td.applied", has_text="1").wait_for(timeout=WAIT)  # the counter, live
    shot(page, "chaos")
    toggle.uncheck()
    eventually(lambda: world["admin"].get("/admin/chaos/rules/boom").json()["enabled"] is False, "the rule off")
    assert proxy_get(world, "/ok/x").status_code == 200, "the next request after the toggle is not broken"
    world["admin"].delete("/admin/chaos/rules/boom")


def test_a_drift_alert_resolved_on_the_page_stays_resolved(page, world):
    world["api"].stop()  # the contract changes under the proxy: the same API, renamed a field
    world["api"] = Proc([sys.executable, str(ROOT / "tests" / "backend.py"), str(world["api_port"]),
                         "--variant", "renamed"], world["api_port"])
    assert proxy_get(world, "/users/5").status_code == 200
    alert = eventually(lambda: [a for a in world["admin"].get("/admin/drift-alerts?unresolved_only=true").json()
                                if a["id"] is not None], "the drift alert")[0]
    page.goto(f"{world['base']}/#drift")
    row = page.locator(f"tr[data-alert='{alert['id']}']")
    row.wait_for(timeout=WAIT)
    shot(page, "drift")
    row.locator("button.accept").click()
    row.wait_for(state="detached", timeout=WAIT)
    # resolved in the proxy, and still so after its next persist and the same drift again
    assert proxy_get(world, "/users/6").status_code == 200
    page.wait_for_timeout(1500)
    assert world["admin"].get("/admin/drift-alerts?unresolved_only=true").json() == []
    page.reload()
    page.uncheck("#drift-open")
    page.locator(f"tr[data-alert='{alert['id']}'] td.state", has_text="accepted").wait_for(timeout=WAIT)


def test_the_endpoint_explorer_shows_schema_and_histogram(page, world):
    page.goto(f"{world['base']}/#endpoints")
    page.locator(".ep", has_text="GET /users/{id}").click()
    detail = page.locator("#endpoint-detail")
    detail.locator("svg.hist rect").first.wait_for(timeout=WAIT)
    assert "username" in detail.inner_text() and "status mix" in detail.inner_text()
    shot(page, "endpoints")


def test_swagger_ui_lists_the_learned_operations(page, world):
    page.goto(f"{world['base']}/swagger.html")
    op = page.locator(".opblock", has_text="/users/{id}")
    op.first.wait_for(timeout=WAIT * 2)
    assert page.locator(".opblock-summary-method", has_text="GET").count() >= 1
    assert urlsplit(world["proxy"].url).netloc in page.locator(".servers").inner_text()
    # "try it out" goes through the proxy (by way of /admin/try/, the page's own origin)
    op.first.locator(".opblock-summary").click()
    page.locator("button.try-out__btn").first.click()
    page.locator("input[placeholder='id']").first.fill("7")
    page.locator("button.execute").first.click()
    status = page.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for(timeout=WAIT * 2)
    assert status.inner_text().strip().startswith("200")
    shown = page.locator(".live-responses-table .microlight").all_inner_texts()
    assert '"username": "user7"' in shown[0]
    assert "content-type: application/json" in shown[1] and "tornado" not in shown[1].lower()
    shot(page, "swagger")


def test_virtual_data_rows_and_snapshots(page, world):
    page.goto(f"{world['base']}/#resources")
    page.locator("#resource-list .ep", has_text="notes").click()
    rows = page.locator("#resource-rows tbody tr")
    rows.first.wait_for(timeout=WAIT)
    assert "second" in page.locator("#resource-rows").inner_text()
    page.fill("#snapshot-form input[name=name]", "from-the-page")
    page.click("#snapshot-form button:not([type=button])")
    page.locator("tr[data-snapshot=from-the-page]").wait_for(timeout=WAIT)
    assert [s["name"] for s in world["admin"].get("/admin/snapshots").json()] == ["from-the-page"]
    shot(page, "resources")
