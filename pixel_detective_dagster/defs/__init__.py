"""The Dagster layer: assets, checks, resources, sensors, jobs and automation over the domain packages."""
