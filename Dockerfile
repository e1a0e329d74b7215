# One image for the three kpulse services; the command picks one:
#   python -m collector | python -m aggregator (default) | python -m dashboards
#
# Only instructions the classic builder understands are used (Debian's docker.io 20.10 has no BuildKit/buildx),
# so the image builds with `docker build`, `docker-compose build` and `docker buildx build` alike.
#
#   docker build -t kpulse .
#   docker build --build-arg BASE_IMAGE=kpulse-base/debian-python:bookworm -t kpulse .
#
# Behind a TLS-intercepting proxy, put the proxy's CA certificate(s) as *.crt files in
# deploy/compose/build-ca/: pip in the builder stage trusts them; they never reach the final image.
# checkov:skip=CKV_DOCKER_7: the base is a build argument whose default is a fixed tag (python:3.11-slim), which checkov cannot resolve
# checkov:skip=CKV_DOCKER_2: one image runs three services (the collector has no HTTP port), so health is declared per service in docker-compose.yml and the Kubernetes probes, not here

ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/tmp/pip-ca.pem \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY deploy/compose/build-ca/ /tmp/build-ca/
RUN find /etc/ssl/certs/ca-certificates.crt /tmp/build-ca -name '*.crt' -type f -exec cat {} + >/tmp/pip-ca.pem \
    && test -s /tmp/pip-ca.pem

# Dependencies first, read from pyproject.toml, so that a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        >/tmp/requirements.txt \
    && python3 -m venv /opt/kpulse \
    && /opt/kpulse/bin/pip install --requirement /tmp/requirements.txt

COPY collector/ collector/
COPY aggregator/ aggregator/
COPY dashboards/ dashboards/
# The wheel is built (hatchling, in pip's isolated build environment) and installed; pip itself is then
# removed from the venv: the runtime never installs anything.
RUN /opt/kpulse/bin/pip install --no-deps . \
    && /opt/kpulse/bin/python -m pip uninstall --yes pip setuptools \
    && /opt/kpulse/bin/python -c 'import aggregator, collector, dashboards'


FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="kpulse" \
      org.opencontainers.image.description="kpulse collector, aggregator and dashboards (pick one with the command)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 kpulse \
    && useradd --system --uid 10001 --gid kpulse --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin kpulse \
    && mkdir -p /var/lib/kpulse/spool \
    && chown -R 10001:10001 /var/lib/kpulse
COPY --from=builder /opt/kpulse /opt/kpulse
ENV PATH=/opt/kpulse/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080
CMD ["python", "-m", "aggregator"]
