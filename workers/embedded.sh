#!/usr/bin/env bash
# The whole deployment in one process, with no server: LevelDB storage (SPIRAL_DB_PATH,
# ./spiraldb), the broker and the results in SQLite files (SPIRAL_EMBEDDED_DIR,
# ./spiral-embedded: broker.sqlite3, results.sqlite3), beat inside the worker. LevelDB
# admits one process, so the pool is threads. Send it work from another shell with
# `spiral-enqueue`. Killed (even with SIGKILL), it loses nothing: restarted, it gets
# back the messages it had fetched and not finished.
set -euo pipefail
if [ -n "${REDIS_URL:-}" ]; then
    echo "embedded.sh: REDIS_URL is set; unset it for the embedded deployment" >&2
    exit 2
fi
exec celery -A spiral_tasks worker --beat --pool threads --concurrency "${SPIRAL_THREADS:-4}" \
    --loglevel "${SPIRAL_LOG_LEVEL:-INFO}" "$@"
