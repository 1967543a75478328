#!/usr/bin/env bash
# The scheduler of the Redis deployment: periodic GC (SPIRAL_GC_EVERY_S, 60 s) and the
# nightly stats rebuild (SPIRAL_REBUILD_CRON, "0 2 * * *"). Runs celery-redbeat: start
# two for availability, only the one holding the Redis lock schedules; the other takes
# over within lock timeout + max interval (60 s) when it dies. The lock lives 5 x the
# max interval beat runs with (SPIRAL_BEAT_MAX_INTERVAL_S, 10 s, or --max-interval)
# unless SPIRAL_BEAT_LOCK_TIMEOUT_S is set; a lock too short for it is refused at start.
# Run it supervised: it exits when it loses its lock or Redis.
set -euo pipefail
: "${REDIS_URL:?set REDIS_URL, e.g. redis://127.0.0.1:6379/0}"
exec celery -A spiral_tasks beat --loglevel "${SPIRAL_LOG_LEVEL:-INFO}" "$@"
