"""The Dagster layer: assets, checks, resources, sensors, jobs and automation over the domain packages."""

from pixel_detective_dagster.storage.quiet import quiet

quiet()  # before the asset modules load: Dagster warns about beta/preview APIs at definition time
