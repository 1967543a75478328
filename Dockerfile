# The project's image (every service of docker-compose.yml runs it). BASE_IMAGE is any
# image with Python 3.11+ and pip; .ci/containers builds one from Debian's packages
# (.ci/images/python.Dockerfile) where no registry of images can be reached.
ARG BASE_IMAGE=python:3.11-slim

# The dependencies alone, from the lock: a layer that changes only with it.
FROM ${BASE_IMAGE} AS deps
WORKDIR /app
RUN pip install --no-cache-dir uv==0.13.9
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project

FROM deps
COPY README.md ./
COPY spiral_tasks ./spiral_tasks
COPY workers ./workers
RUN uv sync --frozen --no-dev
ENV PATH="/app/.venv/bin:$PATH"
USER nobody
CMD ["workers/worker.sh"]
