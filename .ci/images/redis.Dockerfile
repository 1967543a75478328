# Redis from Debian bookworm (redis-server 7.0, redis-cli) on the locally made base
# image, used like the official redis image: data in /data, `redis-server ...` as the
# command, reachable from other containers (see redis-entrypoint.sh).
ARG BASE_IMAGE=spiral-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir /data && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/redis-entrypoint
WORKDIR /data
USER redis
EXPOSE 6379
ENTRYPOINT ["redis-entrypoint"]
CMD ["redis-server"]
