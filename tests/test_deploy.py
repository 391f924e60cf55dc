"""Instance settings, the scale-out configuration (compose, Dockerfile, deploy/) and the `dg` project."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml
from dagster import DagsterInstance, DagsterRunStatus, build_resources
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config_schema
from dagster_docker import DockerRunLauncher
from dagster_postgres import DagsterPostgresStorage

from pixel_detective_dagster.app.instance_config import ensure_dagster_home, install_instance_config, template_text
from pixel_detective_dagster.defs.assets import ALL_ASSETS
from pixel_detective_dagster.defs.resources import resources_from_env
from pixel_detective_dagster.storage.layout import PARTITIONS_NAME

REPO = Path(__file__).resolve().parents[1]
SHARED_SECTIONS = ["concurrency", "run_monitoring", "retention", "telemetry"]


def load(relative: str) -> dict:
    return yaml.safe_load((REPO / relative).read_text())


def test_instance_template_is_installed_once_and_limits_the_gpu_pool(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    dagster_home = ensure_dagster_home(tmp_path / "data")  # what `pixel-detective ingest` does
    assert (dagster_home / "dagster.yaml").read_text() == template_text()
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        config = instance.get_concurrency_config()
        assert config.pool_config.default_pool_limit == 1  # the gpu pool: one model step at a time
        assert config.run_queue_config.max_concurrent_runs == 4
        assert instance.get_settings("retention")["sensor"]["purge_after_days"]["skipped"] == 7
    custom = dagster_home / "dagster.yaml"
    custom.write_text("telemetry:\n  enabled: true\n")
    install_instance_config(dagster_home)  # a user's own settings are kept
    assert custom.read_text() == "telemetry:\n  enabled: true\n"
    # `make dev` runs `pixel-detective dev`, which installs it too (app/dev.py: ensure_dagster_home)
    assert "pixel-detective dev" in (REPO / "Makefile").read_text()


def test_deploy_instance_is_postgres_and_docker_and_matches_the_template() -> None:
    deploy = load("deploy/dagster.yaml")
    assert validate_config(dagster_instance_config_schema(), deploy).success
    assert validate_config(DagsterPostgresStorage.config_type(), deploy["storage"]["postgres"]).success
    launcher = deploy["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_docker", DockerRunLauncher.__name__)
    assert validate_config(DockerRunLauncher.config_type(), launcher["config"]).success
    template = yaml.safe_load(template_text())
    assert {s: deploy[s] for s in SHARED_SECTIONS} == {s: template[s] for s in SHARED_SECTIONS}


def test_compose_wires_postgres_daemon_webserver_user_code_and_qdrant() -> None:
    compose, deploy = load("docker-compose.yml"), load("deploy/dagster.yaml")
    services = compose["services"]
    assert set(services) == {"postgres", "qdrant", "user_code", "webserver", "daemon", "search"}
    assert services["search"]["entrypoint"][:2] == ["pixel-detective", "serve"]
    assert "PIXEL_DETECTIVE_API_TOKEN" in services["search"]["environment"]  # it binds 0.0.0.0
    assert (REPO / services["user_code"]["build"]["dockerfile"]).is_file()
    env = services["user_code"]["environment"]
    assert env["QDRANT_URL"] == "http://qdrant:6333" and env["DAGSTER_CURRENT_IMAGE"] == services["user_code"]["image"]
    # what the run launcher forwards and mounts exists in the compose project
    launcher = deploy["run_launcher"]["config"]
    assert set(launcher["env_vars"]) <= set(env)
    assert launcher["network"] == compose["networks"]["pixel_detective"]["name"]
    volume_names = {v.get("name") for v in compose["volumes"].values() if v}
    assert {m.split(":")[0] for m in launcher["container_kwargs"]["volumes"]} <= volume_names
    # the webserver and daemon find the code location where the Dockerfile serves it
    dockerfile = (REPO / "Dockerfile").read_text()
    command = json.loads(dockerfile.split("CMD ", 1)[1])
    grpc = load("deploy/workspace.yaml")["load_from"][0]["grpc_server"]
    assert grpc["host"] == "user_code" and str(grpc["port"]) == command[command.index("-p") + 1]
    for service in ("webserver", "daemon"):
        assert "/opt/dagster/workspace.yaml" in services[service]["entrypoint"]
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in shlex.split(line)[1:-1]:
                assert (REPO / source).exists(), source


def dg(*args: str) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "dg"), *args]
    return subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300
    )


def test_dg_lists_the_definitions_and_launches_a_batch(env: Path, registered_batches: list[str]) -> None:
    listed = dg("list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr[-3000:]
    definitions = json.loads(listed.stdout[listed.stdout.index("{") :])
    assert {a["asset_key"] for a in definitions["assets"]} == {a.key.to_user_string() for a in ALL_ASSETS}
    assert {"image_folder_sensor", "maps_automation_sensor"} <= {s["name"] for s in definitions["sensors"]}

    ensure_dagster_home(env)
    with DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(PARTITIONS_NAME, registered_batches)
    launched = dg("launch", "--assets", "*", "--partition", registered_batches[0])
    assert launched.returncode == 0, launched.stderr[-3000:]
    with DagsterInstance.get() as instance:
        assert [r.status for r in instance.get_runs()] == [DagsterRunStatus.SUCCESS]
    with build_resources(resources_from_env()) as resources:
        assert resources.vector_index.for_collection(resources.storage.layout, "pics").count() == 6
