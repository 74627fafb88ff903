"""The viewer in a real browser: Debian's chromium, headless, driven by Playwright.

Never a downloaded browser build: the system chromium (`make setup` installs it where apt is
available); the tests skip, saying so, where there is none. Screenshots of every page type land
in `$TRAJFORGE_VIEW_SHOTS` (default: the test's temporary folder) for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.schema import Trajectory
from pipeline.store import RunStore
from pipeline.view.site import Site

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright not installed: `make setup` (pip install -e '.[dev]')"
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no system chromium: `apt-get install -y chromium` (make setup does it as root); "
    "the viewer's browser tests never download a browser build",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        try:
            instance = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        except playwright_api.Error as exc:
            pytest.skip(f"system chromium at {CHROMIUM} does not start under Playwright: {exc}")
        yield instance
        instance.close()


@pytest.fixture()
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.on("request", lambda r: _only_local(r.url))
    yield tab
    context.close()


def _only_local(url: str) -> None:
    assert url.startswith(("http://127.0.0.1", "file://", "data:", "about:")), f"viewer fetched {url}"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("TRAJFORGE_VIEW_SHOTS") or tmp_path_factory.mktemp("shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_overview_list_filter_and_trajectory(served: tuple[Site, str], page: object, shots: Path) -> None:
    site, url = served
    store = RunStore(site.data.root)
    raw = store.read_records("raw", Trajectory)
    kept = {t.trajectory_id for t in store.read_records("kept", Trajectory)}
    raw_ids = {t.trajectory_id for t in raw}

    page.goto(url)
    counts = {
        g.get_attribute("data-stage"): g.get_attribute("data-count") for g in page.locator("g.stage").all()
    }
    assert counts["rollouts"] == str(len(raw))
    assert counts["answered"] == str(sum(t.status == "answered" for t in raw))
    assert counts["kept"] == str(len(kept & raw_ids))
    assert counts["plan"] == str(len(kept - raw_ids))
    assert page.locator("#toolmix svg path").count() >= 2
    page.screenshot(path=shots / "overview.png", full_page=True)

    page.goto(url + "list.html")
    page.wait_for_selector("body[data-index-loaded=yes]")
    assert page.locator("#rows tr").count() == len(site.data.entries)
    page.select_option("#f-outcome", "dropped")
    page.fill("#f-q", "built? (#1)")  # the task whose second rollout answered wrong
    dropped_rows = page.locator("#rows tr.dropped")
    assert dropped_rows.count() == 2 and page.locator("#rows tr.kept").count() == 0
    page.screenshot(path=shots / "list.png", full_page=True)
    wrong = page.locator("#rows tr.dropped", has_text="-r1-")
    wrong.locator("td.id a").click()

    page.wait_for_selector("#final")
    assert "dropped" in page.locator("#outcome").inner_text()
    assert "wrong answer: '1234' vs gold '1900'" in page.locator("#drop-reasons").inner_text()
    assert page.locator(".step-verdicts li.fail", has_text="wrong answer").is_visible()
    code = page.locator(".step .call .hl").first
    assert code.is_visible() and "crop" in code.inner_text()
    images = page.locator("img.step-img, img.input")
    assert images.count() >= 3
    for i in range(images.count()):
        images.nth(i).scroll_into_view_if_needed()
        images.nth(i).evaluate("img => img.complete || new Promise(r => img.onload = img.onerror = r)")
        assert images.nth(i).evaluate("img => img.naturalWidth") > 0
    page.locator("img.input").first.click()
    assert page.locator("#zoom").is_visible()
    page.screenshot(path=shots / "trajectory-zoom.png")
    page.keyboard.press("Escape")
    page.screenshot(path=shots / "trajectory.png", full_page=True)

    page.locator("#rollouts-link").click()
    assert page.locator(".side .col").count() == 2
    page.screenshot(path=shots / "rollouts.png", full_page=True)


@pytest.mark.slow
def test_static_site_opens_from_disk(served: tuple[Site, str], page: object, tmp_path: Path) -> None:
    site, _ = served
    site.write(tmp_path / "site")
    page.goto((tmp_path / "site" / "list.html").as_uri())
    page.wait_for_selector("body[data-index-loaded=yes]")
    assert page.locator("#rows tr").count() == len(site.data.entries)
    page.locator("#rows tr td.id a").first.click()
    page.wait_for_selector("#final")
    first = page.locator("img.input").first
    first.evaluate("img => img.complete || new Promise(r => img.onload = img.onerror = r)")
    assert first.evaluate("img => img.naturalWidth") > 0
