# execflow's image: every component (`execflow run ...`, `simulate`, `seed`, the CLI) from
# one image. Build from the repository root:
#
#   docker build -t execflow:latest .
#   docker run --rm execflow:latest --help
#
# The builder installs the locked dependencies (requirements/runtime.txt, every file
# checked against its hash) and execflow into a venv; the runtime stage copies that venv
# alone: no compiler, no pip, nothing downloaded when a container starts. It runs as the
# unprivileged user `execflow` (uid 10001). PYTHON_IMAGE must give python3 (3.11+) with
# its C headers (quickfix's build needs Python.h) and apt-get, at the same path in both
# stages (the venv's interpreter is a link to it): the official python images do.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# quickfix (the LP gateway's FIX engine) has only a source release on PyPI: it compiles
# here, never in the runtime image. g++ is the base release's own (a pinned Debian
# version would break at its next point release): DL3008 is waived for this line.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/execflow
COPY requirements/runtime.txt /tmp/runtime.txt
# --require-hashes also refuses any dependency the lock does not pin
RUN /opt/execflow/bin/python -m pip install --require-hashes -r /tmp/runtime.txt
COPY pyproject.toml README.md LICENSE /src/
COPY src /src/src
# the dependencies are all in place: execflow itself only, and then pip leaves the venv
RUN /opt/execflow/bin/python -m pip install --no-deps /src \
    && /opt/execflow/bin/python -m pip uninstall -y pip \
    && /opt/execflow/bin/execflow version

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 execflow \
    && useradd --system --uid 10001 --gid execflow --home-dir /var/lib/execflow \
        --shell /usr/sbin/nologin execflow \
    && mkdir -p /var/lib/execflow /var/log/execflow/provider /etc/execflow \
    && chown execflow:execflow /var/lib/execflow /var/log/execflow /var/log/execflow/provider
COPY --from=builder /opt/execflow /opt/execflow
COPY examples/seed.toml /etc/execflow/seed.toml
# Settings every container shares; the broker, state and database URLs come from the
# deployment (deploy/docker-compose.yml). Metrics and the API listen on all of the
# container's interfaces: the container's network is the boundary, not 127.0.0.1.
ENV PATH=/opt/execflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    EXECFLOW_LOG_DIR=/var/log/execflow/provider \
    EXECFLOW_SEED_FILE=/etc/execflow/seed.toml \
    EXECFLOW_METRICS_HOST=0.0.0.0 \
    EXECFLOW_API_HOST=0.0.0.0
# numeric, so that a runtime policy (e.g. runAsNonRoot) can check it without /etc/passwd
USER 10001:10001
WORKDIR /var/lib/execflow
# SIGTERM: stop intake, drain in-flight work, requeue the rest (EXECFLOW_SHUTDOWN_TIMEOUT_S)
STOPSIGNAL SIGTERM
ENTRYPOINT ["execflow"]
CMD ["--help"]
