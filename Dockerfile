# Fleet Lattice operator image.
#
#   buildah bud --build-arg BASE_IMAGE=... -t fleet-lattice/operator .      (or docker build)
#
# BASE_IMAGE: the runtime base, any Debian bookworm with python3 at /usr/bin/python3 (or the default below).
# BUILDER_IMAGE: the same distribution plus the venv module (defaults to BASE_IMAGE, which is right for
# python:*-slim). Builder and runtime must share the interpreter: the venv is copied across as-is.
# tests/e2e/image/build_image.py builds this without any registry, from bases made by debootstrap.
ARG BASE_IMAGE=docker.io/library/python:3.11.14-slim-bookworm
ARG BUILDER_IMAGE=${BASE_IMAGE}

FROM ${BUILDER_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/fleetlattice
# Optional build secret `pip-ca`: a CA bundle for reaching PyPI through a TLS-intercepting proxy. Used only
# while pip runs; it is in no layer. Without it pip uses its own CA bundle.
ENV PIP_CA=/run/secrets/pip-ca
# Dependencies first, pinned: this layer is reused until requirements.txt changes. Wheels only, except
# nkeys: PyPI has it as a source distribution only (pure Python, built here like the project's own wheel).
COPY tests/e2e/image/requirements.txt /src/requirements.txt
RUN --mount=type=secret,id=pip-ca \
    if [ -s "$PIP_CA" ]; then export PIP_CERT="$PIP_CA"; fi \
 && /opt/fleetlattice/bin/pip install --only-binary=:all: --no-binary=nkeys -r /src/requirements.txt
COPY pyproject.toml README.md /src/
COPY operator /src/operator
# --no-deps plus `pip check`: a dependency missing from the lock fails here, not at run time.
RUN --mount=type=secret,id=pip-ca \
    if [ -s "$PIP_CA" ]; then export PIP_CERT="$PIP_CA"; fi \
 && /opt/fleetlattice/bin/pip wheel --no-deps --wheel-dir /src/dist /src \
 && /opt/fleetlattice/bin/pip install --no-deps /src/dist/*.whl \
 && /opt/fleetlattice/bin/pip check \
 && /opt/fleetlattice/bin/python -m compileall -q /opt/fleetlattice/lib \
 && /opt/fleetlattice/bin/pip uninstall --yes pip

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="fleet-lattice-operator" \
      org.opencontainers.image.description="Fleet Lattice: a fleet's messaging on NATS (kopf operator)" \
      org.opencontainers.image.licenses="Apache-2.0"
# Byte-code is compiled at build time; the root filesystem is read-only at run time (see the chart).
ENV PATH=/opt/fleetlattice/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp LANG=C.UTF-8
COPY --from=builder /opt/fleetlattice /opt/fleetlattice
# A named user for uid 65532 (the distroless "nonroot"), so tools that look the uid up find it.
RUN printf 'nonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin\n' >> /etc/passwd \
 && printf 'nonroot:x:65532:\n' >> /etc/group
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["fleetlattice"]
CMD ["run"]
