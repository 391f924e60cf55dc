"""The first hour: one configuration (settings.toml under the environment), a missing model failing in
seconds with one line, text search through the cached text tower, commands importing only what they
use, quiet output, and the done-when sequence on a fresh data directory with no variables set by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from dagster import DagsterInstance, EnvVar, build_resources, materialize

from pixel_detective_dagster.app.cli import main
from pixel_detective_dagster.app.instance_config import ensure_dagster_home
from pixel_detective_dagster.defs.assets import ALL_ASSETS
from pixel_detective_dagster.defs.resources import resources_from_env
from pixel_detective_dagster.storage.layout import PARTITIONS_NAME
from pixel_detective_dagster.storage.settings import SETTINGS, Settings, SettingsError

BIN = Path(sys.executable).parent
HEAVY = ("torch", "open_clip", "dagster", "transformers", "pandas", "sklearn")


def plain_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a new user: none of our settings, an empty Hugging Face cache, this checkout first."""
    ours = {s.env for s in SETTINGS} | {"PIXEL_DETECTIVE_HOME", "DAGSTER_HOME", "HF_HUB_OFFLINE"}
    env = {k: v for k, v in os.environ.items() if k not in ours}
    (tmp_path / "hf_cache").mkdir(exist_ok=True)
    return {**env, "HF_HOME": str(tmp_path / "hf_cache"), "PYTHONPATH": os.pathsep.join(sys.path), **extra}


def timed(
    command: list[str], cwd: Path, env: dict[str, str], timeout: int = 900
) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return done, time.perf_counter() - start


def test_settings_file_under_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIXEL_DETECTIVE_CLIP_MODEL", raising=False)
    monkeypatch.delenv("PIXEL_DETECTIVE_PROJECTION_REFIT", raising=False)
    settings = Settings(tmp_path)
    assert settings.resolve("clip.model").source == "default" and settings.get("clip.model") == "ViT-B-32"
    settings.update({"clip.model": "/models/clip", "projection.refit": "yes", "caption.num_beams": "3"})
    (tmp_path / "settings.toml").write_text("# mine, kept\n" + (tmp_path / "settings.toml").read_text())
    settings = Settings(tmp_path)
    assert settings.get("clip.model") == "/models/clip" and settings.resolve("clip.model").source == str(
        tmp_path / "settings.toml"
    )
    assert settings.get("projection.refit") is True and settings.get("caption.num_beams") == 3
    monkeypatch.setenv("PIXEL_DETECTIVE_CLIP_MODEL", "/env/clip")
    assert settings.resolve("clip.model").value == "/env/clip"
    assert settings.resolve("clip.model").source == "env PIXEL_DETECTIVE_CLIP_MODEL"
    settings.update({"clip.model": None})
    assert "# mine, kept" in (tmp_path / "settings.toml").read_text() and "clip.model" not in settings.file_values
    with pytest.raises(SettingsError, match="unknown setting 'clip.modle'"):
        settings.update({"clip.modle": "x"})
    with pytest.raises(SettingsError, match="must be true or false"):
        settings.update({"projection.refit": "maybe"})
    (tmp_path / "settings.toml").write_text("[clip]\nmodle = 1\n")
    with pytest.raises(SettingsError, match="unknown setting 'clip.modle'"):
        Settings(tmp_path)


def test_resources_read_the_settings_file_and_env_vars_override_it(
    tmp_path: Path, tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for setting in SETTINGS:
        monkeypatch.delenv(setting.env, raising=False)
    monkeypatch.setenv("PIXEL_DETECTIVE_HOME", str(tmp_path / "home"))
    assert main(["models", "use", str(tiny_models["clip"].parent)]) == 0
    assert main(["config", "set", "projection.refit_fraction", "0.25"]) == 0
    resources = resources_from_env()
    assert resources["clip_model"].model == str(tiny_models["clip"].resolve())
    assert resources["caption_model"].model == str(tiny_models["blip"].resolve())
    assert resources["projection"].refit_fraction == 0.25
    monkeypatch.setenv("PIXEL_DETECTIVE_CLIP_MODEL", "/elsewhere")
    assert resources_from_env()["clip_model"].model == EnvVar("PIXEL_DETECTIVE_CLIP_MODEL")  # Dagster's EnvVar kept
    assert main(["models", "use", "default"]) == 0
    assert resources_from_env()["caption_model"].model == "Salesforce/blip-image-captioning-base"


def test_every_setting_shows_the_default_its_resource_uses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pixel-detective config` shows each setting's default and the resources keep defaults of their own: setting
    every variable to the default that config shows changes no resource's value, so the two never drift apart."""

    def values() -> dict[str, dict[str, object]]:
        with build_resources(resources_from_env()) as built:
            return {key: getattr(built, key).model_dump() for key in resources_from_env()}

    for setting in SETTINGS:
        monkeypatch.delenv(setting.env, raising=False)
    monkeypatch.setenv("PIXEL_DETECTIVE_HOME", str(tmp_path))
    defaults = values()
    shown = [s for s in SETTINGS if s.default is not None]
    assert {"clip.model", "caption.max_new_tokens", "models.compile", "index.bulk_pass_kb"} <= {s.key for s in shown}
    for setting in shown:
        text = str(setting.default).lower() if setting.kind is bool else str(setting.default)
        monkeypatch.setenv(setting.env, text)
    assert values() == defaults


def test_config_shows_each_value_and_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for setting in SETTINGS:
        monkeypatch.delenv(setting.env, raising=False)
    monkeypatch.setenv("PIXEL_DETECTIVE_HOME", str(tmp_path))
    monkeypatch.setenv("QDRANT_API_KEY", "secret-never-printed")
    assert main(["models", "use", "ViT-L-14", "--pretrained", "datacomp_xl_s13b_b90k"]) == 0
    capsys.readouterr()
    assert main(["config", "--json"]) == 0
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)["settings"]}
    assert rows["clip.model"]["value"] == "ViT-L-14" and rows["clip.model"]["source"] == str(tmp_path / "settings.toml")
    assert rows["clip.pretrained"]["value"] == "datacomp_xl_s13b_b90k"
    assert rows["caption.model"]["source"] == "default"
    assert rows["index.api_key"] == {
        "key": "index.api_key",
        "value": "***",
        "source": "env QDRANT_API_KEY",
        "env": "QDRANT_API_KEY",
    }
    assert main(["config"]) == 0
    text = capsys.readouterr().out
    assert "secret-never-printed" not in text and "clip.model" in text and "(env PIXEL_DETECTIVE_HOME)" in text


def test_a_missing_model_fails_in_seconds_with_one_line(tmp_path: Path, photos: Path) -> None:
    """The default ViT-B-32 / BLIP are not on this machine: no download retries, one line saying what to do."""
    done, seconds = timed(
        [str(BIN / "pixel-detective"), "ingest", str(photos), "--collection", "pics"], tmp_path, plain_env(tmp_path)
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: CLIP model 'ViT-B-32' is not on this machine"), lines
    assert "pixel-detective models fetch" in lines[0] and "models use DIR" in lines[0]
    print(f"missing model reported in {seconds:.1f} s")


def test_a_failed_model_steps_first_error_message_carries_the_hint(
    env: Path, registered_batches: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIXEL_DETECTIVE_CLIP_MODEL", "hf-hub:nobody/no-such-clip-model")
    ensure_dagster_home(env)
    instance = DagsterInstance.get()
    instance.add_dynamic_partitions(PARTITIONS_NAME, registered_batches)
    result = materialize(
        ALL_ASSETS,
        partition_key=registered_batches[0],
        instance=instance,
        resources=resources_from_env(),
        raise_on_error=False,
    )
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    assert failure.step_key == "clip_embeddings"
    assert "CLIP model 'hf-hub:nobody/no-such-clip-model' is not on this machine" in error.message
    assert "pixel-detective models fetch" in error.message  # the message the UI shows first, not only stderr


def test_fresh_offline_demo_then_search_then_the_code_location_with_no_settings_by_hand(tmp_path: Path) -> None:
    """The issue's done-when: demo, search, then the code location's sensor picks up five new images."""
    clone = tmp_path / "clone"
    clone.mkdir()
    env = plain_env(tmp_path)
    timings = {}

    done, timings["demo"] = timed([str(BIN / "pixel-detective"), "demo", "--folder", "demo_images"], clone, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "FALLING BACK to tiny RANDOM-WEIGHT models" in done.stdout
    assert "Warning" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    settings = clone / ".pixel_detective" / "settings.toml"
    assert "tiny/clip" in settings.read_text() and "tiny/blip" in settings.read_text()

    done, timings["search"] = timed(
        [str(BIN / "pixel-detective"), "search", "a cat", "--collection", "demo", "--json"], clone, env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == ""  # quiet: no library warnings, no progress bars
    assert len(json.loads(done.stdout)["results"]) == 10

    # what each command imported, in a fresh process: no model stack and no Dagster where none is needed
    probe = (
        "import sys, json\nfrom pixel_detective_dagster.app.cli import main\ncode = main(sys.argv[1:])\n"
        f"print(json.dumps([code, [m for m in {HEAVY!r} if m in sys.modules]]), file=sys.stderr)"
    )
    for argv in (
        ["status", "--collection", "demo"],
        ["collections"],
        ["config"],
        ["search", "a dog", "--collection", "demo"],
    ):
        done, seconds = timed([sys.executable, "-c", probe, *argv], clone, env)
        code, imported = json.loads(done.stderr.strip().splitlines()[-1])
        assert code == 0 and imported == [], (argv, imported, done.stderr[-2000:])
        timings[f"fresh {argv[0]}"] = seconds

    # `make dev`: the code location (definitions module, DAGSTER_HOME as the Makefile exports it) sees five new
    # images through its folder sensor and runs their batch with the models the demo chose
    location = r"""
import json, sys
from dagster import DagsterInstance, build_sensor_context, build_resources
from pixel_detective_dagster.definitions import defs
from pixel_detective_dagster.samples.images import generate_folder
from pixel_detective_dagster.storage.layout import PARTITIONS_NAME
from pathlib import Path

generate_folder(Path("demo_images") / "new", 5, "small")
instance = DagsterInstance.get()
sensor = defs.get_sensor_def("image_folder_sensor")
with build_resources({"storage": defs.resources["storage"]}) as resources:
    result = sensor(build_sensor_context(instance=instance, resources={"storage": resources.storage}))
keys = [r.partition_key for r in result.run_requests]
instance.add_dynamic_partitions(PARTITIONS_NAME, keys)
run = defs.resolve_job_def("ingest_batches").execute_in_process(instance=instance, partition_key=keys[0])
clip = defs.resources["clip_model"].model
print(json.dumps({"keys": keys, "success": run.success, "clip": clip}))
"""
    dagster_home = clone / ".pixel_detective" / "dagster_home"
    done, timings["sensor + run"] = timed(
        [sys.executable, "-c", location], clone, {**env, "DAGSTER_HOME": str(dagster_home)}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["keys"] == ["demo-000002"] and report["success"] and report["clip"].endswith("tiny/clip")
    done, _ = timed([str(BIN / "pixel-detective"), "status", "--collection", "demo", "--json"], clone, env)
    status = json.loads(done.stdout)
    assert status["files_seen"] == 26 and status["failed"] == 0 and status["index_points"] == 25
    print("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))


def living_in_group(group: int) -> list[int]:
    """Processes of process group ``group`` that are still running (zombies awaiting their reaper are not)."""
    living = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            living.append(int(stat.parent.name))
    return living


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dev_serves_on_the_given_port_and_stops_cleanly_on_sigterm(env: Path, tmp_path: Path) -> None:
    """Started in the background (SIGINT inherited ignored, as from a script), it still stops on SIGTERM."""
    import signal
    import urllib.request

    port = free_port()
    log = (tmp_path / "dev.log").open("w")
    dev = subprocess.Popen(  # as a script's background job: SIGINT ignored, inherited through exec
        ["sh", "-c", f'trap "" INT; exec "{BIN / "pixel-detective"}" dev --port {port}'],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as reply:
                    assert reply.status == 200
                    break
            except OSError:
                assert dev.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
                time.sleep(2)
        else:
            pytest.fail("the UI never answered: " + (tmp_path / "dev.log").read_text()[-3000:])
        (group,) = {os.getpgid(int(p)) for p in Path(f"/proc/{dev.pid}/task/{dev.pid}/children").read_text().split()}
        start = time.monotonic()
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(timeout=60) == 0
        stopped = time.monotonic() - start
    finally:
        if dev.poll() is None:
            dev.kill()
    assert living_in_group(group) == []  # nothing of dagster dev's process group is left
    assert "KeyboardInterrupt received" in (tmp_path / "dev.log").read_text()
    print(f"stopped {stopped:.1f} s after SIGTERM")


def test_map_page_and_picture_have_axes_colours_names_and_tooltips(tmp_path: Path) -> None:
    from pixel_detective_dagster.defs.assets.map_page import write_map_page
    from pixel_detective_dagster.defs.assets.ui_metadata import PALETTE, nice_ticks

    assert nice_ticks(-3.2, 9.7) == [-2.0, 0.0, 2.0, 4.0, 6.0, 8.0] and nice_ticks(0, 1)[-1] == 1.0
    assert nice_ticks(-0.013, 0.041)[0] == -0.01 and nice_ticks(5, 5) == [5.0]
    xy = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.5], [3.0, 3.0]])
    labels = np.array([0, 0, 1, -1])
    page = write_map_page(tmp_path / "map.html", "demo", xy, labels, {0: "cats <&> dogs"}, ["a.jpg", "b.jpg", "c", "d"])
    text = page.read_text()
    assert "<script" not in text and "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert text.count("<circle") == 4 and "<title>a.jpg — cats &lt;&amp;&gt; dogs</title>" in text
    assert "<title>d — noise</title>" in text and "UMAP 1" in text and "UMAP 2" in text
    assert f"rgb{PALETTE[1]}" in text and ">cluster 1 (1)<" in text  # unnamed clusters keep a name


def test_the_ui_shows_automation_on_and_keeps_a_later_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster._daemon.asset_daemon import get_auto_materialize_paused, set_auto_materialize_paused

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    ensure_dagster_home(tmp_path)
    with DagsterInstance.get() as instance:
        assert not get_auto_materialize_paused(instance)  # what the "Auto-materialize on/off" badge reads
        set_auto_materialize_paused(instance, True)  # the user pauses it in the UI
    ensure_dagster_home(tmp_path)
    with DagsterInstance.get() as instance:
        assert get_auto_materialize_paused(instance)
