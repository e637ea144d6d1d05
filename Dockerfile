# Hera API image: slim Python, dependencies in their own layer, non-root, health-checked.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HERA_DATA_DIR=/data \
    LOG_FORMAT=json \
    PORT=8080 \
    FORWARDED_ALLOW_IPS=127.0.0.1

WORKDIR /app

# Dependencies first: this layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml README.md ./
RUN mkdir -p app && touch app/__init__.py \
    && pip install . \
    && pip uninstall -y hera

COPY app ./app
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home /app hera \
    && mkdir -p /data && chown hera:hera /data

USER hera
VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\",\"8080\")}/api/health', timeout=2)" || exit 1

# Shell form so ${PORT} is expanded; exec so uvicorn gets the signals. X-Forwarded-For is
# believed only from FORWARDED_ALLOW_IPS (uvicorn reads it): the client address is what the
# rate limits count, so trusting every peer would let any client pick its own budget.
CMD exec uvicorn app.main:app --host 0.0.0.0 --port "${PORT}" --proxy-headers --no-access-log
