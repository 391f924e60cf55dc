"""Declarative automation: a collection's map and clusters refresh themselves after new batches land.

``MAPS_REFRESH`` (``AutomationCondition.eager()``) requests ``umap_projection`` / ``image_clusters`` /
``duplicate_groups`` (the per-collection views of the ``maps`` group) for a
batch once its upstream is updated by a run that did not already include them (e.g. a batch
materialized only up to the index from the UI, or a re-run of the index); nothing is requested while
an upstream is missing or in progress, and a run that already carried the maps is not repeated.
``maps_automation_sensor`` evaluates it and starts running by default (Dagster's implicit default
automation sensor would start stopped).
"""

from __future__ import annotations

from dagster import AssetSelection, AutomationCondition, AutomationConditionSensorDefinition, DefaultSensorStatus

MAPS_GROUP = "maps"
MAPS_REFRESH = AutomationCondition.eager()

maps_automation_sensor = AutomationConditionSensorDefinition(
    "maps_automation_sensor",
    target=AssetSelection.groups(MAPS_GROUP),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Refreshes each collection's UMAP map, clusters and duplicate groups after new batches reach the index.",
)
