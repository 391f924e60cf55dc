"""The Pixel Detective code location: ``dagster dev`` / ``dagster asset materialize -m`` load ``defs``."""

from dagster import Definitions, in_process_executor

from pixel_detective_dagster.assets import ALL_ASSETS
from pixel_detective_dagster.assets.models import model_versioned_assets
from pixel_detective_dagster.jobs import ingest_job
from pixel_detective_dagster.resources import resources_from_env
from pixel_detective_dagster.sensors import image_folder_sensor

resources = resources_from_env()
# In-process execution: every step of a run shares one process, so models load once per run, not per step.
defs = Definitions(
    assets=model_versioned_assets(ALL_ASSETS, resources),
    jobs=[ingest_job],
    sensors=[image_folder_sensor],
    resources=resources,
    executor=in_process_executor,
)
