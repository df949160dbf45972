# One file, two images: `--target runner` (the model runner, transformers on CPU or CUDA) and
# `--target backend` (FastAPI backend with the built web UI). docker-compose.yaml builds both.

# ---- the web UI -------------------------------------------------------------------------
FROM node:20-bookworm-slim AS ui
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json* ./
RUN npm install --no-audit --no-fund
COPY frontend/ ./
RUN if [ -f package.json ]; then npm run build; else mkdir -p dist; fi

# ---- Python base: uv and the locked dependencies ---------------------------------------
FROM python:3.11-slim-bookworm AS base
ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PATH=/app/.venv/bin:$PATH
RUN pip install --no-cache-dir "uv>=0.5,<1"
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project --extra transformers
COPY protos/ protos/
COPY model_runner/ model_runner/
COPY webui_backend/ webui_backend/
COPY migrations/ migrations/
COPY alembic.ini ./
RUN uv sync --frozen --no-dev --extra transformers

# ---- the model runner -------------------------------------------------------------------
FROM base AS runner
# cpu (default) or a CUDA build such as cu128: uv picks the matching PyTorch wheel.
ARG TORCH_BACKEND=cpu
RUN uv pip install --torch-backend="${TORCH_BACKEND}" "torch>=2.5"
ENV RUNNER_HOST=0.0.0.0 RUNNER_PORT=50051
EXPOSE 50051 9090
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-m", "model_runner.healthcheck", "127.0.0.1:50051"]
CMD ["model-runner", "serve"]

# ---- the backend ------------------------------------------------------------------------
FROM base AS backend
COPY --from=ui /src/frontend/dist /app/frontend/dist
ENV WEBUI_HOST=0.0.0.0 WEBUI_PORT=8080 WEBUI_DATA_DIR=/data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
CMD ["webui-backend", "serve"]
