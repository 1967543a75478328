#!/usr/bin/env bash
# A worker node of the Redis deployment: consumes every queue the app routes to
# (spiral and spiral.maintenance) and answers remote control (celery inspect, Flower).
# Serves its Prometheus metrics on METRICS_PORT (9099; one per node on a host).
# Needs REDIS_URL. Extra arguments go to celery (e.g. --concurrency 4 -n w2@%h).
set -euo pipefail
: "${REDIS_URL:?set REDIS_URL, e.g. redis://127.0.0.1:6379/0}"
exec celery -A spiral_tasks worker --pool prefork --loglevel "${SPIRAL_LOG_LEVEL:-INFO}" "$@"
