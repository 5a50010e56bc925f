# pubsub workbench: the `pubsub` command line in a slim image.
#   docker build -t pubsub .
#   docker run --rm -v "$PWD/data:/data" pubsub run /app/examples/orders.py --once
# The store lives in /data (PUBSUB_DB); the image runs as an unprivileged user.
# Build stage: a wheel with the C extension (core._speedups) compiled. The slim image
# has no compiler; without one the extension is skipped and the bus takes its slower
# pure-Python path.
FROM python:3.11-slim AS build
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md MANIFEST.in ./
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
    && rm -rf /wheels \
    && python -c "import core._speedups"

USER 10001:10001
VOLUME ["/data"]

HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["pubsub", "check", "--quick"]

ENTRYPOINT ["pubsub"]
CMD ["--help"]
