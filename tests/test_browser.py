"""The Dagster UI in headless Chromium: every asset in the graph, a batch materialized from the UI.

Starts ``dagster dev`` (webserver + daemon, the packaged dagster.yaml) on a free localhost port over an
isolated DAGSTER_HOME and data directory holding one registered batch, drives Debian's ``chromium``
with Playwright, and saves a screenshot of each step under ``test-artifacts/browser/``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus
from playwright.sync_api import Page, expect, sync_playwright

from pixel_detective_dagster.app.instance_config import install_instance_config
from pixel_detective_dagster.defs.assets import ALL_ASSETS
from pixel_detective_dagster.storage.layout import PARTITIONS_NAME

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ASSETS = [a.key.to_user_string() for a in ALL_ASSETS]  # every asset of the graph, in its order
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", REPO / "test-artifacts")) / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_TIMEOUT_S = 120
RUN_TIMEOUT_S = 150

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium)"),
    pytest.mark.timeout(240),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dagster dev exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    pytest.fail(f"dagster dev did not serve {url} within {START_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def dagster_dev(env: Path, registered_batches: list[str], tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``dagster dev`` over the test's data directory with one batch registered: (base URL, batch key)."""
    dagster_home = Path(os.environ["DAGSTER_HOME"])
    install_instance_config(dagster_home)
    with DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(PARTITIONS_NAME, registered_batches)
    port = free_port()
    log = tmp_path / "dagster_dev.log"
    command = [str(Path(sys.executable).parent / "pixel-detective"), "dev", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process, log)
        yield url, registered_batches[0]
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # dagster dev, its code server and daemon: our own session
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.copy(log, ARTIFACTS / "dagster_dev.log") if ARTIFACTS.exists() else None


def show_every_asset(page: Page) -> None:
    """Expand every group (the graph's Alt+E shortcut), zooming out if the fitted graph still overflows."""
    page.get_by_text("ingest", exact=True).wait_for()
    page.keyboard.press("Alt+e")
    page.get_by_text(ASSETS[0], exact=True).wait_for()
    zoom_out = page.get_by_role("button").filter(has=page.get_by_role("img", name="zoom_out"))
    for _ in range(6):
        if all(page.get_by_text(asset, exact=True).count() for asset in ASSETS):
            return
        zoom_out.click()


def show_picture(page: Page, asset_url: str, key: str, mime: str, screenshot: str) -> None:
    """Open an asset's Markdown metadata entry ``key`` and check the UI renders its embedded picture."""
    page.goto(asset_url)
    page.get_by_role("row").filter(has_text=key).get_by_text("Show Markdown").click()
    expect(page.get_by_role("dialog").locator(f'img[src^="data:image/{mime};base64,"]')).to_be_visible()
    page.wait_for_timeout(500)  # let the dialog finish fading in
    page.screenshot(path=ARTIFACTS / screenshot)


def wait_for_run(instance: DagsterInstance, partition: str) -> DagsterRunStatus:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        runs = instance.get_runs()
        if runs and runs[0].is_finished:
            assert runs[0].tags.get("dagster/partition") == partition
            return runs[0].status
        time.sleep(2)
    pytest.fail(f"no finished run within {RUN_TIMEOUT_S}s: {[r.status for r in instance.get_runs()]}")


def test_ui_shows_the_graph_and_materializes_a_batch(dagster_dev: tuple[str, str]) -> None:
    url, partition = dagster_dev
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(30_000)
        try:
            page.goto(f"{url}/locations/__repository__@pixel_detective/jobs/ingest_batches")
            page.get_by_role("button", name="Materialize all").wait_for()
            show_every_asset(page)
            for asset in ASSETS:
                expect(page.get_by_text(asset, exact=True)).to_be_in_viewport()
            page.screenshot(path=ARTIFACTS / "1_asset_graph.png")

            page.get_by_role("button", name="Materialize all").click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_text("Select a partition or create one").click()
            page.get_by_role("menuitem", name=partition).click()
            dialog.get_by_text(f"Launch runs to materialize {len(ASSETS)} assets").click()  # closes the picker
            page.screenshot(path=ARTIFACTS / "2_partition_picked.png")
            dialog.get_by_role("button", name="Launch 1 run").click()

            with DagsterInstance.get() as instance:
                status = wait_for_run(instance, partition)
            page.goto(f"{url}/runs")
            expect(page.get_by_text("Success").first).to_be_visible()
            page.screenshot(path=ARTIFACTS / "3_run_succeeded.png")

            show_picture(page, f"{url}/assets/thumbnails", "contact_sheet", "jpeg", "4_thumbnails_contact_sheet.png")
            show_picture(page, f"{url}/assets/image_clusters", "pics/map", "png", "5_cluster_map.png")
            show_picture(page, f"{url}/assets/umap_projection", "pics/map", "png", "6_projection_map.png")

            page.goto(f"{url}/assets/vector_index?view=checks")  # the list and each check's detail agree
            page.get_by_text("one_point_per_unique_image").first.wait_for()
            expect(page.get_by_text("Passed").first).to_be_visible()
            page.screenshot(path=ARTIFACTS / "7_vector_index_checks.png")
            assert "Skipped" not in page.inner_text("body")
            page.goto(f"{url}/locations/__repository__@pixel_detective/jobs/ingest_batches")
            expect(page.get_by_text("Auto-materialize on")).to_be_visible()  # the maps' automation sensor runs
            page.screenshot(path=ARTIFACTS / "8_automation_on.png")
        except Exception:
            page.screenshot(path=ARTIFACTS / "failure.png")
            (ARTIFACTS / "failure.txt").write_text(page.inner_text("body"))
            raise
        finally:
            browser.close()
    print(f"browser test: {time.monotonic() - start:.1f}s in the browser; screenshots in {ARTIFACTS}")
    assert status == DagsterRunStatus.SUCCESS
