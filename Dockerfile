# syntax=docker/dockerfile:1
# One image for all four services. Pick the service with the command:
#   metering-ingest | metering-catalog | metering-entitlements | metering-billing   [migrate] [--check-config]
# (deploy/k8s sets `command:` for every container; there is no special ENTRYPOINT).
#
#   docker build -t metering:dev .
#   docker run --rm -e METERING_DATABASE_URL=... -e METERING_REDIS_URL=... -p 50051:50051 metering:dev metering-ingest

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: install the project and its dependencies into a virtualenv ------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# Compilers only here, for any dependency without a wheel for this platform; the final stage has none.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --upgrade pip setuptools wheel

WORKDIR /src
COPY pyproject.toml README.md ./
COPY libs ./libs
COPY services ./services
# A regular (non-editable) install: the venv holds everything, /src is not needed at run time.
# pip byte-compiles the installed modules, so the read-only root filesystem costs nothing at start-up.
RUN pip install . \
    && metering-ingest --help >/dev/null \
    && metering-catalog --help >/dev/null \
    && metering-entitlements --help >/dev/null \
    && metering-billing --help >/dev/null

# --- runtime: the venv on a clean slim image, as an unprivileged user ---------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp

RUN groupadd --system --gid 10001 metering \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin metering

# Same path as in the build stage: the venv's scripts point at /opt/venv/bin/python.
COPY --from=build /opt/venv /opt/venv

USER 10001:10001
WORKDIR /tmp

# gRPC (ingest, catalog, entitlements, billing) and their Prometheus /metrics ports.
EXPOSE 50051 50052 50053 50054 9091 9092 9093 9094

CMD ["metering-ingest"]
