"""The per-collection caption setting: captions off, the configured default model, or another (cheaper) model.

Stored in the catalog (``collection_settings``), so it travels with the collection and every process
(CLI, Dagster UI, sensor runs) sees the same choice.
"""

from __future__ import annotations

from pixel_detective_dagster.catalog.store import Catalog

SETTING = "captions"
OFF = "off"
DEFAULT = "default"


def parse_captions(value: str) -> str | None:
    """``off``, ``default`` (stored as ``None``) or a caption model (hub id or local directory)."""
    value = value.strip()
    if not value:
        raise ValueError("--captions takes 'off', 'default' or a caption model (hub id or local directory)")
    if value.lower() in (OFF, DEFAULT):
        return None if value.lower() == DEFAULT else OFF
    return value


def set_captions(catalog: Catalog, collection: str, value: str) -> str | None:
    """Store the collection's caption setting (as ``parse_captions`` reads it); returns what was stored."""
    stored = parse_captions(value)
    catalog.set_setting(collection, SETTING, stored)
    return stored


def captions_choice(catalog: Catalog, collection: str) -> str | None:
    """``OFF``, a model to caption this collection with, or ``None`` for the configured default model."""
    return catalog.setting(collection, SETTING)


def describe_captions(choice: str | None, default_model: str) -> str:
    """The setting as people read it: ``off``, ``default (<model>)`` or the model."""
    return f"{DEFAULT} ({default_model})" if choice is None else choice
