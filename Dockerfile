# One image for the code location (gRPC server), the runs it launches, the webserver and the daemon.
# Build: docker compose build   (or: docker build -t pixel_detective_user_code .)
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    PIXEL_DETECTIVE_HOME=/data \
    HF_HOME=/data/hf_home \
    NUMBA_CACHE_DIR=/data/numba_cache

WORKDIR /opt/dagster/app
COPY pyproject.toml README.md ./
COPY pixel_detective_dagster ./pixel_detective_dagster
RUN pip install ".[deploy]"

COPY deploy/dagster.yaml ${DAGSTER_HOME}/dagster.yaml
COPY deploy/workspace.yaml /opt/dagster/workspace.yaml

EXPOSE 4000
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "pixel_detective_dagster.definitions", "--location-name", "pixel_detective"]
