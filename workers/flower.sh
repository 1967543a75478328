#!/usr/bin/env bash
# Flower, the web monitor (http://<host>:5555; --port=N to change), on the broker the
# settings name: the Redis deployment with REDIS_URL set, else the embedded one in
# SPIRAL_EMBEDDED_DIR (there Flower shows no queue lengths). Basic auth is required:
# FLOWER_BASIC_AUTH=user:password, several pairs separated by commas; without it the
# script refuses to start, since Flower's API can revoke tasks and shut workers down.
# --enable_events=False: the workers send task events themselves
# (worker_send_task_events), so Flower never has to switch them on.
# Extra arguments go to Flower (e.g. --port=5556 --address=127.0.0.1).
set -euo pipefail
pair='[^:,]+:[^,]+'
if [[ ! "${FLOWER_BASIC_AUTH:-}" =~ ^${pair}(,${pair})*$ ]]; then
    echo "flower.sh: Flower requires auth:" \
        "set FLOWER_BASIC_AUTH=user:password[,user2:password2]" >&2
    exit 2
fi
exec celery -A spiral_tasks flower --enable_events=False \
    --logging="${SPIRAL_LOG_LEVEL:-INFO}" "$@"
