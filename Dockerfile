# syntax=docker/dockerfile:1
# One image for every role: `lifecycle worker`, `lifecycle api`, `lifecycle generate ...`.
# Multi-stage: the build stage installs the project into a venv from the lock file; the
# runtime stage is python:slim with that venv, running as an unprivileged user.

# The newest 3.11 patch release of the official image (3.11.15, docker-library/python's
# versions.json of June 2026; its slim variant for Debian 12). CI tests on 3.11.7, the same
# minor release (the same cp311 wheels).
ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md requirements.lock ./
COPY service ./service
COPY stream_topologies ./stream_topologies
COPY setup.py ./
# a C compiler for this stage only: the install compiles the per-event core with mypyc (setup.py)
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
# runtime dependencies only, each at the version the lock pins (the lock is CI's environment)
RUN /opt/venv/bin/pip install -c requirements.lock . \
    && /opt/venv/bin/lifecycle --help > /dev/null \
    && /opt/venv/bin/python -c "import service.core as c; assert c.BUILD == 'compiled', c.BUILD"

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 lifecycle \
    && useradd --system --uid 10001 --gid lifecycle --home-dir /home/lifecycle --create-home lifecycle
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LIFECYCLE_API_HOST=0.0.0.0 \
    LIFECYCLE_WORKER_HOST=0.0.0.0 \
    LIFECYCLE_LOG_FORMAT=json \
    LIFECYCLE_DATA_DIR=/tmp/lifecycle-data
USER 10001:10001
WORKDIR /home/lifecycle
EXPOSE 8000 6066 6068
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["lifecycle", "healthcheck"]
ENTRYPOINT ["lifecycle"]
CMD ["api"]
