# The production image: the same code path as `parley up`, without the local servers.
# Base pinned to a patch release of Python 3.11 on Debian 12 (bookworm).
FROM python:3.11.11-slim-bookworm

# One unprivileged user. Its data dir (PARLEY_DATA_DIR: the worker's RocksDB tables) is created and
# owned here, so a named volume mounted on it starts with this owner: Docker copies the image
# directory's ownership into an empty named volume on first mount.
ARG PARLEY_UID=10001
RUN groupadd --system --gid "${PARLEY_UID}" parley \
 && useradd --system --uid "${PARLEY_UID}" --gid parley --home-dir /home/parley --create-home parley \
 && mkdir -p /var/lib/parley \
 && chown parley:parley /var/lib/parley \
 && chmod 0750 /var/lib/parley

WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain domain
COPY commands commands
COPY projections projections
COPY streams streams
COPY api api
COPY infra infra
# Served at /docs/protocol (read from the working dir).
COPY docs docs
RUN pip install --no-cache-dir .

ENV PARLEY_ENVIRONMENT=production \
    PARLEY_DATA_DIR=/var/lib/parley \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/parley"]
# Gateway HTTP/Socket.IO, worker metrics (PARLEY_WORKER_METRICS_PORT).
EXPOSE 8000 9400
USER parley
ENTRYPOINT ["parley"]
