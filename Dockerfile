# One image for all four services; the command picks one:
#   docker run IMAGE python -m services.session   (or services.executor, services.recovery_oracle,
#   services.indexer; `agentgpt` is the CLI, apps/cli). Kubernetes sets the command per Deployment (k8s/base).
#
# Base image: python:3.11-slim-bookworm in production (BASE_IMAGE below; pin it by digest in CI).
# Machines that cannot pull images build an equivalent base from Debian packages first:
#   debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm /tmp/rootfs \
#       http://deb.debian.org/debian
#   tar -C /tmp/rootfs -c . | docker import - local/python:3.11-bookworm
#   docker build --build-arg BASE_IMAGE=local/python:3.11-bookworm -t agentgpt-sessions:dev .
# (Debian bookworm's python3 is 3.11; only `python3` exists there, hence python3 below.)
# Behind a TLS-intercepting proxy, also pass --build-arg EXTRA_CA_CERTS="$(cat /usr/local/share/ca-certificates/*.crt)".
#
# The container writes only to /tmp and to the volume at /var/lib/agentgpt (SQLite, embedded block
# store): it runs with readOnlyRootFilesystem. Bytecode is compiled at build time for that reason.

ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG EXTRA_CA_CERTS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1
RUN if [ -n "$EXTRA_CA_CERTS" ]; then \
        printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/extra.crt \
        && cat /usr/local/share/ca-certificates/extra.crt >> /etc/ssl/certs/ca-certificates.crt; \
    fi
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install uv==0.13.8 \
    && /opt/uv/bin/uv venv --python "$(command -v python3)" /opt/venv
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# Dependencies first (exact pins, hashes of the lock decide the layer cache), the project after.
COPY requirements-runtime.lock /src/requirements-runtime.lock
RUN /opt/uv/bin/uv pip sync --python /opt/venv/bin/python /src/requirements-runtime.lock
COPY pyproject.toml /src/
COPY agentgpt /src/agentgpt
COPY services /src/services
# Of the application layer only the CLI: the local stack (apps/localnet) and the demo (apps/demo) are
# development tools and stay out of the image (`agentgpt up` says so).
COPY apps/__init__.py /src/apps/__init__.py
COPY apps/cli /src/apps/cli
RUN /opt/uv/bin/uv pip install --python /opt/venv/bin/python --no-deps /src \
    && /opt/venv/bin/python -c "import services.session.app, services.executor.app, services.indexer.app, services.recovery_oracle.app, apps.cli.main" \
    && ! /opt/venv/bin/python -c "import apps.localnet" 2>/dev/null \
    && ! /opt/venv/bin/python -c "import apps.demo" 2>/dev/null \
    && /opt/venv/bin/agentgpt config > /dev/null

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="agentgpt-sessions" \
      org.opencontainers.image.description="AgentGPT Sessions services: session, executor, recovery_oracle, indexer"
RUN groupadd --system --gid 10001 agentgpt \
    && useradd --system --uid 10001 --gid agentgpt --home-dir /var/lib/agentgpt --no-create-home agentgpt \
    && mkdir -p /var/lib/agentgpt \
    && chown agentgpt:agentgpt /var/lib/agentgpt
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    AGENTGPT_HOST=0.0.0.0 \
    AGENTGPT_GRPC_PORT=50051 \
    AGENTGPT_METRICS_PORT=9100
# Relative paths of the defaults (sessions.db, .agentgpt/ipfs) land on the data volume.
WORKDIR /var/lib/agentgpt
VOLUME ["/var/lib/agentgpt"]
USER 10001:10001
EXPOSE 50051 9100
CMD ["python", "-m", "services.session"]
