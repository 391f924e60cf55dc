"""The Pixel Detective code location: ``dagster dev`` / ``dagster asset materialize -m`` load ``defs``."""

from dagster import Definitions, in_process_executor

from pixel_detective_dagster.defs.assets import ALL_ASSETS
from pixel_detective_dagster.defs.assets.checks import ALL_CHECKS
from pixel_detective_dagster.defs.assets.models import model_versioned_assets
from pixel_detective_dagster.defs.automation import maps_automation_sensor
from pixel_detective_dagster.defs.jobs import ingest_job
from pixel_detective_dagster.defs.resources import resources_from_env
from pixel_detective_dagster.defs.sensors import image_folder_sensor


def make_definitions() -> Definitions:
    """The code location, with resources (and the model assets' code versions) from the environment as it is now."""
    resources = resources_from_env()
    return Definitions(
        assets=model_versioned_assets(ALL_ASSETS, resources),
        asset_checks=ALL_CHECKS,
        jobs=[ingest_job],
        sensors=[image_folder_sensor, maps_automation_sensor],
        resources=resources,
        # One process per run: torch and the models load once, not once per step subprocess; the model
        # steps share the one-slot ``gpu`` pool anyway, so step subprocesses would buy no parallelism.
        executor=in_process_executor,
    )


defs = make_definitions()
