"""Sensors that turn file-system changes into materializations."""

from pixel_detective_dagster.defs.sensors.folder_sensor import image_folder_sensor

__all__ = ["image_folder_sensor"]
