# One image with every Lumen entry point: lumen-operator, lumen-threader, lumen-exporter, lumenctl.
#
#   make image                                          # here: podman, a Debian base from mmdebstrap
#   docker build --build-arg BASE=python:3.11-slim .    # anywhere else (the default BASE)
#
# BASE must provide python3 (3.11, what operator/requirements.lock is compiled for) with the venv
# module, and /etc/ssl/certs/ca-certificates.crt; both stages use the same BASE (the virtualenv's
# python is a link to the base's). The image runs as 65532:65532 with a read-only root
# filesystem: it writes only to /tmp and /var/lib/lumen, which the pod mounts (docs/install.md).
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
# The system trust store rather than pip's own (a build behind a TLS proxy mounts its CA bundle
# here); no pip cache or .pyc files in the layers: bytecode is compiled once, below.
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_NO_COMPILE=1 \
    PYTHONDONTWRITEBYTECODE=1
# Dependencies first, from the lock only: a change to the code alone reuses this layer.
COPY operator/requirements.lock operator/pyproject.toml tools/image_requirements.py /src/
RUN python3 /src/image_requirements.py /src/requirements.lock /src/pyproject.toml \
        > /src/runtime.lock \
 && python3 -m venv /opt/lumen \
 && /opt/lumen/bin/pip install --require-hashes --only-binary=:all: -r /src/runtime.lock
# Then the package itself, without dependencies (as `make setup` does), and every module compiled
# to bytecode that stays valid whatever the files' times (the root filesystem is read-only).
# /out holds what the final stage copies: the virtualenv and the base's passwd/group with the
# user 65532 added.
COPY operator/ /src/operator/
RUN /opt/lumen/bin/pip install --no-deps /src/operator \
 && /opt/lumen/bin/pip uninstall -q -y pip setuptools \
 && /opt/lumen/bin/python -m compileall -q -j 0 -f --invalidation-mode unchecked-hash /opt/lumen \
 && /opt/lumen/bin/lumenctl --help > /dev/null \
 && mkdir -p /out/etc /out/opt \
 && cp /etc/passwd /etc/group /out/etc/ \
 && echo 'lumen:x:65532:65532:Lumen:/nonexistent:/usr/sbin/nologin' >> /out/etc/passwd \
 && echo 'lumen:x:65532:' >> /out/etc/group \
 && mv /opt/lumen /out/opt/lumen

FROM ${BASE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="Lumen" \
      org.opencontainers.image.description="Lumen alerting for kube-prometheus-stack: lumen-operator, lumen-threader, lumen-exporter and lumenctl" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/lumen-alerting/lumen" \
      org.opencontainers.image.documentation="https://github.com/lumen-alerting/lumen/blob/main/docs/install.md"
# One layer: the virtualenv and the user.
COPY --from=build /out/ /
# matplotlib (lumenctl report only) keeps its font cache in MPLCONFIGDIR: /tmp, a writable mount.
ENV PATH=/opt/lumen/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib
USER 65532:65532
WORKDIR /tmp
# No ENTRYPOINT: a pod names the program (`command: [lumen-threader]`).
CMD ["lumenctl", "--help"]
