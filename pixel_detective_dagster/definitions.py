"""The Pixel Detective code location: ``dagster dev`` / ``dagster asset materialize -m`` load ``defs``."""

from dagster import Definitions

from pixel_detective_dagster.assets import ALL_ASSETS
from pixel_detective_dagster.assets.checks import ALL_CHECKS
from pixel_detective_dagster.jobs import ingest_job
from pixel_detective_dagster.resources import resources_from_env
from pixel_detective_dagster.sensors import image_folder_sensor

defs = Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=[ingest_job],
    sensors=[image_folder_sensor],
    resources=resources_from_env(),
)
