# Python 3.11 from Debian bookworm on the locally made base image: what the project's
# Dockerfile gets from python:3.11-slim elsewhere (python, pip installing into the
# system). Built by .ci/containers with this machine's CA bundle in the context
# (ca-certificates.crt), so pip and uv verify the registry whatever TLS sits between.
ARG BASE_IMAGE=spiral-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-pip python3-venv python-is-python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY ca-certificates.crt /usr/local/share/spiral-build/ca-certificates.crt
# python:3.11-slim lets pip install into the system; Debian marks it externally managed.
ENV PIP_BREAK_SYSTEM_PACKAGES=1 \
    SSL_CERT_FILE=/usr/local/share/spiral-build/ca-certificates.crt \
    PIP_CERT=/usr/local/share/spiral-build/ca-certificates.crt
