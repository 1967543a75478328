#!/usr/bin/env bash
# The whole deployment in one process, with no server: LevelDB storage (SPIRAL_DB_PATH,
# ./spiraldb), a filesystem broker and file results (SPIRAL_EMBEDDED_DIR,
# ./spiral-embedded), beat inside the worker. LevelDB admits one process, so the pool
# is threads. Send it work from another shell with `spiral-enqueue`.
set -euo pipefail
if [ -n "${REDIS_URL:-}" ]; then
    echo "embedded.sh: REDIS_URL is set; unset it for the embedded deployment" >&2
    exit 2
fi
exec celery -A spiral_tasks worker --beat --pool threads --concurrency "${SPIRAL_THREADS:-4}" \
    --loglevel "${SPIRAL_LOG_LEVEL:-INFO}" "$@"
