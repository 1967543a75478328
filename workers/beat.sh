#!/usr/bin/env bash
# The scheduler of the Redis deployment: periodic GC (SPIRAL_GC_EVERY_S, 60 s) and the
# nightly stats rebuild (SPIRAL_REBUILD_CRON, "0 2 * * *"). Runs celery-redbeat: start
# two for availability, only the one holding the Redis lock schedules.
set -euo pipefail
: "${REDIS_URL:?set REDIS_URL, e.g. redis://127.0.0.1:6379/0}"
exec celery -A spiral_tasks beat --loglevel "${SPIRAL_LOG_LEVEL:-INFO}" "$@"
