# syntax=docker/dockerfile:1
# The connector image; the same image runs the CXone simulator (`simulate`).
#   docker build -t cxone-connector .
#   docker run --rm cxone-connector --help

FROM python:3.11-slim AS build
# a C compiler for the Avro reader's extension (connector/serde/_avro_flat.pyx); only this stage has it
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY connector ./connector
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CXONE_CONNECTOR_SCHEMA_DIR=/opt/cxone/schemas
# A fixed, unprivileged uid so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 cxone \
 && useradd --system --uid 10001 --gid cxone --no-create-home --shell /usr/sbin/nologin cxone
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY schemas /opt/cxone/schemas
COPY deploy/connector.example.toml /etc/cxone/connector.toml
USER 10001:10001
# 9400: metrics and health (server.port); 8700: the simulator.
EXPOSE 9400 8700
ENTRYPOINT ["cxone-connector"]
CMD ["--help"]
