#!/usr/bin/env bash
# Flower, the web monitor (http://<host>:5555; --port=N to change), on the broker the
# settings name: the Redis deployment with REDIS_URL set, else the embedded one in
# SPIRAL_EMBEDDED_DIR (there Flower shows no queue lengths). Basic auth is required:
# FLOWER_BASIC_AUTH=user:password, several pairs separated by commas; without it the
# script refuses to start, since Flower's API can revoke tasks and shut workers down.
# Workers send no task events by default (each is a publish in the worker's main
# process, README "Task events"): Flower switches them on (`enable_events`, every 5 s)
# while it runs; they stay on after it stops, until `celery -A spiral_tasks control
# disable_events` or the workers restart.
# Extra arguments go to Flower (e.g. --port=5556 --address=127.0.0.1).
set -euo pipefail
pair='[^:,]+:[^,]+'
if [[ ! "${FLOWER_BASIC_AUTH:-}" =~ ^${pair}(,${pair})*$ ]]; then
    echo "flower.sh: Flower requires auth:" \
        "set FLOWER_BASIC_AUTH=user:password[,user2:password2]" >&2
    exit 2
fi
exec celery -A spiral_tasks flower --enable_events=True \
    --logging="${SPIRAL_LOG_LEVEL:-INFO}" "$@"
