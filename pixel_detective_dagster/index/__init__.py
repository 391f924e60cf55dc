"""The Qdrant index: shared point / filter model (``points``), embedded backend (``edge``), server backend (``server``)."""
