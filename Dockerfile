# syntax=docker/dockerfile:1
# payrelay: build a virtualenv in one stage, copy it into a clean slim image in the next.
# The base image is pinned by version; pin it by digest too (python:3.11.13-slim-bookworm@sha256:…)
# in your registry mirror if you need bit-for-bit rebuilds.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/payrelay
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY adapters ./adapters
COPY sandbox ./sandbox
# pip and setuptools are only needed to install: they stay out of the runtime venv (~25 MB, and
# the CVEs image scanners report against them). tests/test_image.py serves payments without them.
RUN /opt/payrelay/bin/pip install --no-cache-dir . \
    && /opt/payrelay/bin/pip uninstall --yes --quiet pip setuptools \
    && /opt/payrelay/bin/payrelay --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="payrelay" \
      org.opencontainers.image.description="Payment gateway adapter service: Stripe, Alipay, WeChat Pay" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/payrelay/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can check it and mounted secret files can
# be made readable to it (group 10001).
RUN groupadd --system --gid 10001 payrelay \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin payrelay
COPY --from=build /opt/payrelay /opt/payrelay
WORKDIR /tmp
USER 10001:10001
EXPOSE 8000
# Liveness only (the process answers HTTP); readiness (/readyz: Redis + workers) is for the
# orchestrator or load balancer. No curl in slim images: Python's urllib does the request.
# `payrelay worker` serves no HTTP: its compose service turns this check off.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["payrelay"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
