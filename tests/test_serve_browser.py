"""The search page in headless Chromium against a real ``pixel-detective serve`` process.

Searches, sees thumbnails load, opens an image, clicks "more like this", uploads and drops an image,
opens the map and clicks a point, lists duplicates; saves a screenshot of each step under the test's
tmp dir (and ``test-artifacts/serve/``).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright
from test_browser import CHROMIUM, CHROMIUM_ARGS, REPO, free_port

from pixel_detective_dagster.app.ingest import ingest
from pixel_detective_dagster.samples.images import generate_folder

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", REPO / "test-artifacts")) / "serve"
START_TIMEOUT_S = 180

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium)"),
    pytest.mark.timeout(900),
]


@pytest.fixture
def service_url(env: Path, tmp_path: Path) -> Iterator[str]:
    """A collection ``trips`` ingested through the pipeline and ``pixel-detective serve`` over it."""
    folder = tmp_path / "library"
    generate_folder(folder / "summer", 8, "small")
    generate_folder(folder / "winter", 6, "small", start=8)
    assert ingest(folder, "trips").success
    port = free_port()
    log = tmp_path / "serve.log"
    command = [str(Path(sys.executable).parent / "pixel-detective"), "serve", "--port", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, f"serve exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"serve did not start in {START_TIMEOUT_S} s:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        assert not (env / "service" / "service.json").exists(), "the service left its announcement behind"


def thumbnails_loaded(page: Page, selector: str) -> int:
    return page.evaluate(
        "(s) => [...document.querySelectorAll(s)].filter((img) => img.complete && img.naturalWidth > 0).length",
        selector,
    )


def settle(page: Page, cards: int) -> None:
    """Wait for ``cards`` thumbnails to load and fade in."""
    page.wait_for_function(f"() => document.querySelectorAll('.card img.loaded').length >= {cards}")
    page.wait_for_timeout(400)


def test_search_page(service_url: str, photos: Path, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(60_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            page.goto(service_url)
            expect(page.locator(".card")).to_have_count(14)
            expect(page.locator("#banner")).to_contain_text("Not semantic")
            settle(page, 14)
            assert thumbnails_loaded(page, ".card img") == 14
            page.screenshot(path=shots / "1_browse.png")

            page.fill("#query", "a dog running on the beach")
            page.click("#search-form button[type=submit]")
            expect(page.locator("#results-summary")).to_contain_text("a dog running on the beach")
            settle(page, 14)
            page.screenshot(path=shots / "2_text_search.png")

            page.locator(".card").first.click()
            expect(page.locator("#detail")).to_be_visible()
            expect(page.locator("#detail-exif")).to_contain_text("Taken")
            page.wait_for_function("() => document.querySelector('#detail-img').naturalWidth > 0")
            page.screenshot(path=shots / "3_detail.png")
            page.click("#detail-like")
            expect(page.locator("#query-chip")).to_contain_text("More like this image")
            expect(page.locator(".card")).to_have_count(13)  # every other image, not the one itself
            settle(page, 13)
            page.screenshot(path=shots / "4_more_like_this.png")

            page.set_input_files("#upload-input", str(min(photos.glob("*.jpg"))))
            expect(page.locator("#query-chip")).to_contain_text("Images like your upload")
            expect(page.locator(".card")).to_have_count(14)
            settle(page, 14)
            page.screenshot(path=shots / "5_upload.png")

            dropped = base64.b64encode(sorted(photos.glob("*.jpg"))[1].read_bytes()).decode()
            transfer = page.evaluate_handle(
                """(data) => {
                    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
                    const transfer = new DataTransfer();
                    transfer.items.add(new File([bytes], "dropped.jpg", { type: "image/jpeg" }));
                    return transfer;
                }""",
                dropped,
            )
            page.dispatch_event("body", "drop", {"dataTransfer": transfer})
            expect(page.locator("#results-summary")).to_contain_text("similar to dropped.jpg")

            page.click(".tabs button[data-view=map]")
            expect(page.locator("#map-status")).to_contain_text("14 points")
            expect(page.locator("#cluster-list li").first).to_be_visible()
            for overlay in (".map-help", ".map-status"):  # a point under the map's captions is still reachable
                under = page.evaluate(
                    """(selector) => { const r = document.querySelector(selector).getBoundingClientRect();
                    return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2).id; }""",
                    overlay,
                )
                assert under == "map-points", (overlay, under)
            box = page.locator("#map-points").bounding_box()
            x, y = page.evaluate("() => window.pixelMap.screenPositionOf(0)")
            page.mouse.move(box["x"] + x, box["y"] + y)
            expect(page.locator("#map-tooltip")).to_be_visible()
            page.wait_for_function("() => document.querySelector('#map-tooltip img').naturalWidth > 0")
            page.screenshot(path=shots / "6_map_hover.png")
            page.locator("#cluster-list li").first.click()
            expect(page.locator("#cluster-images img").first).to_be_visible()
            page.screenshot(path=shots / "7_map_cluster.png")
            page.mouse.click(box["x"] + x, box["y"] + y)
            expect(page.locator("#detail")).to_be_visible()
            page.screenshot(path=shots / "8_map_click.png")
            page.click("#detail-close")

            page.click(".tabs button[data-view=duplicates]")
            expect(page.locator("#dup-summary")).to_contain_text("pair")
            page.screenshot(path=shots / "9_duplicates.png")
        except Exception:
            page.screenshot(path=shots / "failure.png")
            raise
        finally:
            browser.close()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for shot in shots.glob("*.png"):
                shutil.copy(shot, ARTIFACTS / shot.name)
    assert not errors, errors
    print(f"screenshots in {shots} and {ARTIFACTS}")
