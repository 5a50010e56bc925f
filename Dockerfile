# pubsub workbench: the `pubsub` command line in a slim image.
#   docker build -t pubsub .
#   docker run --rm -v "$PWD/data:/data" pubsub run /app/examples/orders.py --once
# The store lives in /data (PUBSUB_DB); the image runs as an unprivileged user.
# Build stage: the pure-Python wheel (py3-none-any; no compiler needed).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md MANIFEST.in ./
COPY core ./core
COPY plugins ./plugins
COPY pubsub_cli ./pubsub_cli
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PUBSUB_DB=/data/pubsub.db

RUN groupadd --system --gid 10001 pubsub \
    && useradd --system --uid 10001 --gid pubsub --home-dir /app --shell /usr/sbin/nologin pubsub \
    && mkdir -p /app /data \
    && chown pubsub:pubsub /data

WORKDIR /app
COPY --from=build /wheels /wheels
COPY examples ./examples
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels

USER 10001:10001
VOLUME ["/data"]

HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["pubsub", "check", "--quick"]

ENTRYPOINT ["pubsub"]
CMD ["--help"]
