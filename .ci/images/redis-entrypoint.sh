#!/bin/sh
# Debian's redis-server, started without a configuration file, runs in protected mode:
# it refuses clients from other hosts while no password is set, which is every client
# in a container network. The official image builds it with protected mode off; this
# does the same for a `redis-server ...` command (a later --protected-mode wins).
set -e
if [ "${1:-}" = redis-server ]; then
    shift
    set -- redis-server --protected-mode no "$@"
fi
exec "$@"
