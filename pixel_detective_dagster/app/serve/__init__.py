"""``pixel-detective serve``: a long-lived search service (FastAPI + uvicorn) with its web page."""
