"""How the asset graph reads in the UI: one group per stage, owners and a ``stage`` tag on every asset."""

OWNERS = ["team:pixel-detective"]


def stage(name: str) -> dict[str, object]:
    """Decorator arguments for an asset of stage ``name`` (ingest, models, index, maps)."""
    return {"group_name": name, "owners": OWNERS, "tags": {"stage": name}}
