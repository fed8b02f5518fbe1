# The production image: the same code path as `parley up`, without the local servers.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain domain
COPY commands commands
COPY projections projections
COPY streams streams
COPY api api
COPY infra infra
RUN pip install --no-cache-dir .
ENV PARLEY_ENVIRONMENT=production PARLEY_DATA_DIR=/var/lib/parley
USER 10001
ENTRYPOINT ["parley"]
