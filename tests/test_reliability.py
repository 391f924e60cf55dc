"""Nothing lost, nothing hidden: hostile names, lost index files, full disks, bad arguments, racing ingests.

Every hostile input is made here, in the test: non-UTF-8 names, FIFOs, garbled databases and index
files, a data directory inside the watched folder, a disk with less free space than a write needs.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import configure_env, mounted_tmpfs
from dagster import DagsterInstance
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG
from inspection import catalog_rows, index_points
from processes import Launcher, alive, ingest_reaching

from pixel_detective_dagster.app.cli import main
from pixel_detective_dagster.app.ingest import ingest
from pixel_detective_dagster.app.instance_config import ensure_dagster_home
from pixel_detective_dagster.catalog.scanning import walk_images
from pixel_detective_dagster.samples.images import generate_folder
from pixel_detective_dagster.storage.names import os_name, stored_name
from pixel_detective_dagster.storage.space import MIN_FREE_ENV, OutOfSpaceError, require_space

BAD_NAME = os.fsdecode(b"bad\xff\xfename.jpg")  # not UTF-8: Python holds it with lone surrogates
BAD_FOLDER = os.fsdecode(b"caf\xe9")  # a Latin-1 folder name


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, *fragments: str) -> None:
    """Exit 2 and exactly one line on stderr, containing every fragment, no traceback."""
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def hostile_names(count: int, seed: int = 0) -> list[str]:
    """Random POSIX file names: arbitrary bytes (no NUL, no '/'), backslash escapes that look like ours."""
    rng = random.Random(seed)
    alphabet = [b for b in range(1, 256) if b != ord("/")]
    names = ["\\x41.jpg", "\\x5c.jpg", "\\\\xff.jpg", "\\xff", "a\\", "\\x5cx5c", "plain.jpg", "写真.jpg"]
    for _ in range(count):
        raw = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))
        names.append(os.fsdecode(raw))
        names.append(os.fsdecode(b"\\x" + raw[:2]) + "\\" + os.fsdecode(raw))
    return names


def test_stored_names_are_exact_and_never_collide() -> None:
    names = hostile_names(3000)
    stored = {name: stored_name(name) for name in names}
    for name, text in stored.items():
        text.encode("utf-8")  # valid UTF-8 for SQLite, Parquet, JSON and Qdrant
        assert os_name(text) == name
        assert os.fsencode(os_name(text)) == os.fsencode(name)
    assert len(set(stored.values())) == len(set(names))
    assert stored_name("ünïcödé_写真.jpg") == "ünïcödé_写真.jpg" and stored_name(BAD_NAME) == "bad\\xff\\xfename.jpg"


@pytest.fixture(scope="module")
def odd_library(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> Iterator[Path]:
    """A collection in a non-UTF-8 folder holding a non-UTF-8 file name (and a FIFO outside it), ingested once."""
    base = tmp_path_factory.mktemp("odd")
    with pytest.MonkeyPatch.context() as monkeypatch:
        configure_env(monkeypatch, base, tiny_models)
        folder = base / BAD_FOLDER
        first, *_ = generate_folder(folder, 3, "small")
        first.rename(folder / BAD_NAME)
        os.mkfifo(base / "pipe.jpg")  # opening it would block: proves a path was never read
        report = ingest(folder, "odd")
        assert report.success, report
        yield folder


def test_non_utf8_names_survive_end_to_end(odd_library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = Path(os.environ["PIXEL_DETECTIVE_HOME"])
    rows = catalog_rows(home, "odd")
    assert rows[stored_name(BAD_NAME)][0] == "indexed"
    by_path = {p["path"]: p for p in index_points("odd").values()}
    assert stored_name(BAD_NAME) in by_path and len(by_path) == 3
    manifest = pd.read_parquet(home / "batches" / "odd-000001" / "manifest.parquet")
    assert stored_name(BAD_NAME) in set(manifest["path"])
    export = home.parent / "odd.parquet"
    code, out, err = run_cli(capsys, "export", "--collection", "odd", "--out", str(export))
    assert code == 0, err
    exported = set(pd.read_parquet(export)["path"])
    assert f"{stored_name(str(odd_library))}/{stored_name(BAD_NAME)}" in exported
    assert all(Path(os_name(p)).is_file() for p in exported)  # each stored path leads back to the exact file
    code, out, err = run_cli(capsys, "search", "a photo", "--collection", "odd", "--limit", "5")
    assert code == 0 and "bad\\xff\\xfename.jpg" in out and "caf\\xe9" in out, err
    code, out, _ = run_cli(capsys, "status", "--collection", "odd", "--json")
    assert code == 0 and json.loads(out)["folder"] == stored_name(str(odd_library))
    # the same folder, unchanged: nothing to redo (the stored names match what the scan sees)
    assert ingest(odd_library, "odd").batches == []


def test_like_and_image_paths_are_confined(odd_library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = odd_library.parent / "pipe.jpg"
    for reference in ("../pipe.jpg", str(fifo), "../../../../../../etc/passwd"):
        code, _, err = run_cli(capsys, "search", "--like", reference, "--collection", "odd")
        assert_user_error(code, err, "not a point id, and not a path inside collection 'odd'", "--image")
    code, out, err = run_cli(capsys, "search", "--like", BAD_NAME, "--collection", "odd", "--json")
    assert code == 0 and len(json.loads(out)["results"]) == 2, err
    code, _, err = run_cli(capsys, "search", "--like", "missing.jpg", "--collection", "odd")
    assert_user_error(code, err, "--like missing.jpg: no such file")
    code, _, err = run_cli(capsys, "search", "--image", str(fifo), "--collection", "odd")
    assert_user_error(code, err, "not a regular file")
    notes = odd_library.parent / "notes.jpg"
    notes.write_text("not a picture\n")
    code, _, err = run_cli(capsys, "search", "--image", str(notes), "--collection", "odd")
    assert_user_error(code, err, "query image", "notes.jpg", "not a recognised image")


BAD_ARGUMENTS = [
    (["ingest", ".", "--collection", "x", "--batch-size", "0"], "--batch-size: 0 is not a number >= 1"),
    (["ingest", ".", "--collection", "x", "--batch-size", "-5"], "--batch-size: -5 is not a number >= 1"),
    (["ingest", "/no/such/folder", "--collection", "x"], "does not exist"),
    (["search", "x", "--collection", "x", "--limit", "-1"], "--limit: -1 is not a number >= 0"),
    (["search", "x", "--collection", "x", "--offset", "-3"], "--offset: -3 is not a number >= 0"),
    (["search", "x", "--collection", "x", "--offset", "1e30"], "is not a whole number"),
    (["search", "--duplicates", "--collection", "x", "--threshold", "5"], "not a similarity in (0, 1]"),
    (["search", "--duplicates", "--collection", "x", "--threshold", "0"], "not a similarity in (0, 1]"),
    (["search", "--duplicates", "--collection", "x", "--threshold", "nan"], "not a similarity in (0, 1]"),
    (["search", "--collection", "x", "--taken-from", "yesterday"], "not an ISO date"),
    (["search", "--collection", "x", "--min-width", "-1"], "--min-width: -1 is not a number >= 0"),
    (["search", "--collection", "x", "--image", "/no/such.jpg"], "does not exist"),
    (["export", "--collection", "x", "--out", "/no/such/dir/out.parquet"], "does not exist"),
    (["search", "x"], "the following arguments are required: --collection"),
    (["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_ARGUMENTS)
def test_bad_arguments_are_one_line_and_exit_2(
    argv: list[str], message: str, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, *argv)
    assert_user_error(code, err, message, "--help")
    assert not (env / "catalog.sqlite").exists()  # refused before any work


def test_errors_found_while_working_are_one_line(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "status", "--collection", "nope")
    assert_user_error(code, err, "no collection named 'nope'")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert ingest(empty, "empty").success
    code, _, err = run_cli(capsys, "search", "a cat", "--collection", "empty")
    assert_user_error(code, err, "has no index yet", "pixel-detective ingest")
    (env / "catalog.sqlite").write_bytes(b"this is not a database" * 100)
    for f in env.glob("catalog.sqlite-*"):
        f.unlink()
    code, _, err = run_cli(capsys, "status", "--collection", "empty")
    assert_user_error(code, err, str(env / "catalog.sqlite"), "not an SQLite database")


def test_lost_or_damaged_index_is_reported_and_repaired(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "photos"
    generate_folder(folder, 4, "small")
    assert ingest(folder, "lost").success
    before = set(index_points("lost"))

    shutil.rmtree(env / "index" / "lost" / "segments")  # the adversarial run's lost segments
    code, out, err = run_cli(capsys, "status", "--collection", "lost")
    assert code == 0 and "warning: the index holds 0 point(s) but the catalog has 4" in out, out + err
    assert "pixel-detective rebuild --collection lost" in out
    lines: list[str] = []
    report = ingest(folder, "lost", echo=lines.append)
    assert report.success and any(line.startswith("repairing:") for line in lines), lines
    assert set(index_points("lost")) == before and "nothing to do" not in "\n".join(lines)

    (env / "index" / "lost" / "edge_config.json").write_text("{garbled")
    code, _, err = run_cli(capsys, "search", "a cat", "--collection", "lost")
    assert_user_error(code, err, str(env / "index" / "lost" / "edge_config.json"), "pixel-detective rebuild")
    code, out, _ = run_cli(capsys, "status", "--collection", "lost", "--json")
    assert code == 0 and json.loads(out)["reliability"]["warnings"][0].startswith("the index cannot be read")
    assert ingest(folder, "lost").success and set(index_points("lost")) == before

    shutil.rmtree(env / "batches" / "lost-000001")  # a finished batch loses its stored artifacts
    lines = []
    assert ingest(folder, "lost", echo=lines.append).success
    assert any("lost their stored artifacts" in line for line in lines), lines
    assert (env / "batches" / "lost-000001" / "clip_embeddings.parquet").exists()
    assert set(index_points("lost")) == before
    assert ingest(folder, "lost").batches == []


def test_full_disk_is_a_clear_error_and_loses_nothing(
    env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(OutOfSpaceError, match=r"not enough disk space for a test at .* needs .* MiB free"):
        require_space(tmp_path, 10**18, "a test")
    folder = tmp_path / "photos"
    generate_folder(folder, 3, "small")
    monkeypatch.setenv(MIN_FREE_ENV, str(10**12))  # keep a petabyte free: every write is refused up front
    code, out, err = run_cli(capsys, "ingest", str(folder), "--collection", "full")
    assert code == 1 and "not enough disk space for" in out and "MiB free" in out, out + err
    assert "Bus error" not in out + err and "Traceback" not in out + err
    assert not (env / "index" / "full").exists()
    monkeypatch.delenv(MIN_FREE_ENV)
    report = ingest(folder, "full")  # space again: the same batches finish, nothing was lost
    assert report.success and len(index_points("full")) == 3


def test_full_index_disk_is_refused_before_qdrant_edge_preallocates(env: Path, tmp_path: Path) -> None:
    """The adversarial run's SIGBUS: a new shard preallocates 2 x 32 MiB; here only 8 MiB are free."""
    folder = tmp_path / "photos"
    with mounted_tmpfs(env / "index", "8m") as store:
        generate_folder(folder, 2, "small")
        lines: list[str] = []
        report = ingest(folder, "tight", echo=lines.append)
        assert not report.success
        assert any(
            line.startswith("step vector_index failed: not enough disk space for a new index shard of collection ")
            and f"tight at {store / 'tight'}: needs 80.0 MiB (64.0 MiB + 16.0 MiB kept free)" in line
            for line in lines
        ), lines
    assert ingest(folder, "tight").success and len(index_points("tight")) == 2


def test_data_directory_hidden_and_system_folders_are_never_scanned(
    tmp_path: Path, tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "photos"
    generate_folder(folder, 2, "small")
    configure_env(monkeypatch, tmp_path, tiny_models)
    monkeypatch.setenv("PIXEL_DETECTIVE_HOME", str(folder / "pd_data"))  # inside the watched folder, not hidden
    for system in ("@eaDir", ".thumbnails", "$RECYCLE.BIN"):
        generate_folder(folder / system, 1, "small", start=10)
    assert ingest(folder, "inside").success
    assert (folder / "pd_data" / "CACHEDIR.TAG").exists() and list((folder / "pd_data" / "thumbnails").rglob("*.webp"))
    again = ingest(folder, "inside")
    assert again.batches == [] and again.files_seen == 2
    assert sorted(catalog_rows(folder / "pd_data", "inside")) == sorted(p.name for p in folder.glob("*.jpg"))
    tagged = folder / "cache"
    generate_folder(tagged, 1, "small", start=11)
    (tagged / "CACHEDIR.TAG").write_bytes(b"Signature: 8a477f597d28d172789f06886806bc55\n")
    walk = walk_images(folder)
    assert len(walk.files) == 2 and set(walk.skipped) == {"cache", "@eaDir", "$RECYCLE.BIN", "pd_data"}


def test_second_ingest_waits_for_batches_in_flight_and_status_shows_runs(
    env: Path, tmp_path: Path, launcher: Launcher, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "busy"
    generate_folder(folder, 6, "small")
    ensure_dagster_home(env)
    pid, _ = ingest_reaching(launcher, folder, "busy", "clip_embeddings")
    instance = DagsterInstance.get()
    code, out, _ = run_cli(capsys, "status", "--collection", "busy", "--json")
    assert code == 0
    in_flight = json.loads(out)["reliability"]["ingest"]
    if alive(pid):  # the first ingest may just have finished: then there is nothing in flight to show
        assert in_flight["state"] == "in flight" and in_flight["pid"] == pid and in_flight["batches"] == ["busy-000001"]
    lines: list[str] = []
    report = ingest(folder, "busy", echo=lines.append)
    assert launcher.wait(pid) == 0, launcher.output(pid)
    assert report.success and report.run_id is None, lines  # it ran nothing itself
    runs_of_batch = [r for r in instance.get_runs() if r.tags.get(ASSET_PARTITION_RANGE_START_TAG) == "busy-000001"]
    assert len(runs_of_batch) == 1  # the model work was done once
    assert len(index_points("busy")) == 6


def test_status_shows_an_ingest_orphaned_by_a_killed_process(
    env: Path, tmp_path: Path, launcher: Launcher, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "photos"
    generate_folder(folder, 4, "small")
    ensure_dagster_home(env)
    pid, _ = ingest_reaching(launcher, folder, "orph", "clip_embeddings")
    os.kill(pid, signal.SIGKILL)
    assert launcher.wait(pid) == -signal.SIGKILL
    code, out, _ = run_cli(capsys, "status", "--collection", "orph")
    assert code == 0 and f"warning: an ingest (pid {pid}, started " in out and "died before it ended" in out, out
    assert ingest(folder, "orph").success and len(index_points("orph")) == 4
    code, out, _ = run_cli(capsys, "status", "--collection", "orph")
    assert code == 0 and "warning" not in out, out


def test_special_files_named_like_images_are_recorded(env: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    generate_folder(folder / "album", 1, "small")
    os.mkfifo(folder / "pipe.jpg")
    os.symlink("/dev/zero", folder / "zero.jpg")
    os.symlink(folder / "album", folder / "album_link.jpg")
    assert ingest(folder, "special").success
    rows = catalog_rows(env, "special")
    assert rows["pipe.jpg"][:2] == ("failed", "a FIFO (named pipe), not a regular file: skipped, never opened")
    assert rows["zero.jpg"][1] == "symbolic link to a character device, not a regular file: skipped, never opened"
    assert rows["album_link.jpg"][1] == "symbolic link to a directory, not a regular file: skipped, never opened"
    assert rows[next(p for p in rows if p.startswith("album/"))][0] == "indexed"


def test_lowest_versions_job_pins_every_declared_lower_bound() -> None:
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, str(repo / ".ci" / "lowest_constraints.py")], capture_output=True, text=True, check=True
    ).stdout
    pins = dict(line.split("==") for line in out.split())
    assert pins["transformers"] and pins["torch"] and pins["dagster"] and "numpy" in pins
    assert "make test-lowest" in (repo / ".ci" / "run").read_text()
    assert "test-lowest:" in (repo / "Makefile").read_text()


def test_catalog_keeps_stored_names_in_sqlite(tmp_path: Path) -> None:
    from pixel_detective_dagster.catalog.store import Catalog, Change

    catalog = Catalog(tmp_path / "catalog.sqlite")
    folder = tmp_path / BAD_FOLDER
    folder.mkdir()
    catalog.register_collection("c", folder)
    assert catalog.collection("c").root == folder.resolve()
    catalog.create_batches("c", [Change(stored_name(BAD_NAME), "upsert", 1, 1)], 10)
    with sqlite3.connect(tmp_path / "catalog.sqlite") as conn:
        assert conn.execute("SELECT path FROM files").fetchone()[0] == "bad\\xff\\xfename.jpg"
