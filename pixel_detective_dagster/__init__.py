"""Pixel Detective: folders of images to a searchable CLIP + caption index, as Dagster assets."""
