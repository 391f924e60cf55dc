"""Entry points (top layer): the ``pixel-detective`` command, ingest, search, collection admin, demo."""
