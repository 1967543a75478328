FROM python:3.11-slim
WORKDIR /app
RUN pip install --no-cache-dir uv==0.13.9
COPY pyproject.toml uv.lock README.md ./
COPY spiral_tasks ./spiral_tasks
COPY workers ./workers
RUN uv sync --frozen --no-dev
ENV PATH="/app/.venv/bin:$PATH"
USER nobody
CMD ["workers/worker.sh"]
