"""The /incidents page in a real headless Chromium (filter, open a detail, acknowledge, see who
did it; a screenshot is kept), and its Basic auth and CSRF defences over plain HTTP."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from lumen_alerting.threader.incidents.web import csrf_token
from tests.support.schemas import REPO
from tests.threader.incidents.incident_app import (
    API_TOKEN,
    BASE_TIME,
    IncidentApp,
    RecordingSilences,
    received,
)

pytestmark = pytest.mark.timeout(180)

CHROMIUM = "/usr/bin/chromium"
# Kept for CI when LUMEN_ARTIFACTS is set, beside the other tests' screenshots.
ARTIFACTS = REPO / "test-artifacts" / "incidents"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
USER = "Ada Lovelace"
EXPECT_TIMEOUT = 30_000  # ms: a busy CI machine


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[IncidentApp]:
    app = IncidentApp(f"sqlite:///{tmp_path / 'incidents.db'}", silences=RecordingSilences())
    app.start()
    try:
        yield app
    finally:
        app.stop()


def seed(app: IncidentApp) -> dict[str, int]:
    ids = {}
    for n, (service, alertname) in enumerate(
        [
            ("gateway", "KubePodCrashLooping"),
            ("gateway", "HighLatency"),
            ("ion", "IonDown"),
            ("billing", "PaymentsFailing"),
        ]
    ):
        (incident,) = app.record(
            received(
                f"web{n}",
                service=service,
                alertname=alertname,
                starts_at=BASE_TIME + timedelta(minutes=n),
                links={"dashboardURL": "https://grafana.example/d/ion"}
                if service == "ion"
                else None,
                summary=f"{alertname} on {service}",
            )
        )
        ids[alertname] = incident.id
    return ids


def test_filter_open_a_detail_and_acknowledge_in_chromium(
    served: IncidentApp, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    ids = seed(served)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                http_credentials={"username": USER, "password": API_TOKEN},
                viewport={"width": 1280, "height": 900},
            )
            page = context.new_page()
            page.set_default_timeout(EXPECT_TIMEOUT)
            expect = sync_api.expect
            page.goto(f"{served.url}/incidents")
            rows = page.locator("#incidents tr.incident")
            expect(rows).to_have_count(4)
            expect(page.locator("#count-triggered")).to_contain_text("4")
            expect(page.locator("#user")).to_have_text(USER)

            page.fill("input[name=service]", "ion")
            page.click("button[type=submit]")
            expect(page).to_have_url(re.compile(r"service=ion"))
            expect(rows).to_have_count(1)
            expect(rows.first.locator("td.service")).to_have_text("ion")

            page.click(f"#incidents a[href='/incidents/{ids['IonDown']}'] >> nth=-1")
            expect(page).to_have_url(re.compile(rf"/incidents/{ids['IonDown']}$"))
            expect(page.locator("#state")).to_have_text("triggered")
            expect(page.locator("#timeline a", has_text="Grafana dashboard")).to_have_attribute(
                "href", "https://grafana.example/d/ion"
            )

            page.click("button:has-text('Acknowledge')")
            expect(page).to_have_url(re.compile(rf"/incidents/{ids['IonDown']}$"))
            expect(page.locator("#state")).to_have_text("acknowledged")
            expect(page.locator("#acknowledged")).to_contain_text(USER)
            expect(page.locator("#timeline td.actor", has_text=USER)).to_have_count(1)
            expect(page.locator("button:has-text('Acknowledge')")).to_have_count(0)

            screenshot = tmp_path / "incident-acknowledged.png"
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert screenshot.stat().st_size > 0
    kept = screenshot
    if os.environ.get("LUMEN_ARTIFACTS"):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        kept = ARTIFACTS / screenshot.name
        shutil.copyfile(screenshot, kept)
    print(f"screenshot: {kept}")

    stored = served.run(lambda store: store.get(ids["IonDown"])).incident
    assert (stored.state, stored.acknowledged_by) == ("acknowledged", USER)
    others = served.run(lambda store: store.get(ids["HighLatency"])).incident
    assert others.state == "triggered"


def test_the_page_asks_for_basic_credentials(served: IncidentApp) -> None:
    with httpx.Client(base_url=served.url) as http:
        anonymous = http.get("/incidents")
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
        wrong = http.get("/incidents", auth=(USER, "not-the-token"))
        assert wrong.status_code == 401
        nameless = http.get("/incidents", auth=("", API_TOKEN))
        assert nameless.status_code == 401
        assert http.get("/incidents", auth=(USER, API_TOKEN)).status_code == 200


def test_posts_need_the_users_csrf_token_and_this_sites_origin(served: IncidentApp) -> None:
    (incident,) = served.record(received("csrf1"))
    action = f"/incidents/{incident.id}/acknowledge"
    good = csrf_token(API_TOKEN, USER)
    with httpx.Client(base_url=served.url, auth=(USER, API_TOKEN)) as http:
        assert http.post(action, data={}).status_code == 400
        assert http.post(action, data={"csrf": "0" * 64}).status_code == 403
        # Another user's token does not do either.
        other = csrf_token(API_TOKEN, "mallory")
        assert http.post(action, data={"csrf": other}).status_code == 403
        cross = http.post(action, data={"csrf": good}, headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403
        referred = http.post(
            action, data={"csrf": good}, headers={"Referer": "https://evil.example/x"}
        )
        assert referred.status_code == 403
        assert served.run(lambda store: store.get(incident.id)).incident.state == "triggered"

        host = served.url.removeprefix("http://")
        done = http.post(action, data={"csrf": good}, headers={"Origin": f"http://{host}"})
        assert done.status_code == 303
        assert done.headers["Location"] == f"/incidents/{incident.id}"
    stored = served.run(lambda store: store.get(incident.id)).incident
    assert (stored.state, stored.acknowledged_by) == ("acknowledged", USER)


def test_the_page_escapes_what_alerts_carry(served: IncidentApp) -> None:
    (incident,) = served.record(
        received(
            "xss1",
            alertname="<script>alert(1)</script>",
            links={"dashboardURL": "javascript:alert(2)"},
        )
    )
    with httpx.Client(base_url=served.url, auth=(USER, API_TOKEN)) as http:
        listing = http.get("/incidents").text
        detail = http.get(f"/incidents/{incident.id}").text
    for html in (listing, detail):
        assert "<script>alert(1)" not in html
        assert "&lt;script&gt;" in html
    assert "javascript:alert(2)" not in detail
