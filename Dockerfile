# syntax=docker/dockerfile:1
# The sidecar image:   docker build -t kuma-trace-sidecar:0.1.0 .
# Any platform: every step is plain pip and Python on the target's own interpreter, no downloaded
# binary, so `docker buildx build --platform linux/amd64,linux/arm64 ...` builds each natively.
# `--build-arg EXTRAS=demo` adds the demo services' libraries (OpenTelemetry, py_zipkin).
# Run it with the Kuma resources mounted at /etc/sidecar and the dataplane named:
#   docker run -v "$PWD/config:/etc/sidecar:ro" -e SIDECAR_DATAPLANE=frontend-01 kuma-trace-sidecar:0.1.0
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=""
# COMPILE=1 (the default): the hot path compiled with mypyc (setup.py lists the modules; mypyc checks
# them against the dependencies, installed here for that; compiler and mypy stay in this stage);
# COMPILE=0: pure Python, the same behaviour at ~20 % more CPU per request (SIDECAR_COMPILE=0: setup.py
# would otherwise compile wherever a compiler is found).
ARG COMPILE=1
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY sidecar ./sidecar
# One virtual environment without pip in it; every module compiled ahead with hashes that are never
# checked against sources, since the root filesystem is read-only at run time.
RUN python -m venv --without-pip /opt/sidecar \
    && if [ "$COMPILE" = 1 ]; then \
         apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
         && pip install --no-cache-dir --disable-pip-version-check ".[compile]" \
         && SIDECAR_COMPILE=1 pip wheel --no-cache-dir --disable-pip-version-check --no-build-isolation --no-deps -w /tmp/wheels . \
         && set -- /tmp/wheels/*.whl; \
       else export SIDECAR_COMPILE=0; set -- .; fi \
    && pip --python /opt/sidecar/bin/python install --no-cache-dir --disable-pip-version-check --no-compile "$1${EXTRAS:+[$EXTRAS]}" \
    && /opt/sidecar/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/sidecar/lib

FROM ${PYTHON_IMAGE}
# Keep equal to [project].version in pyproject.toml (tests/demo/test_container.py checks it).
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="kuma-trace-sidecar" \
      org.opencontainers.image.description="Tracing sidecar proxy with Kuma TrafficTrace semantics (B3, Zipkin v2)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# libnghttp2 is the HTTP/2 codec (through ctypes; without it the sidecar falls back to the slower h2).
# No pip at run time; the standard library compiled ahead too (the base image ships it without .pyc).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnghttp2-14 \
    && rm -rf /var/lib/apt/lists/* \
    && python -m pip uninstall -q -y pip setuptools wheel \
    && python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
        -x '/(site-packages|test|tests|idlelib|lib2to3|tkinter|turtledemo|ensurepip|pydoc_data)/' \
        "$(python -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')" \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin sidecar
COPY --from=build /opt/sidecar /opt/sidecar
ENV PATH=/opt/sidecar/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001
VOLUME ["/etc/sidecar"]
EXPOSE 9901
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(0 if u.urlopen('http://127.0.0.1:9901/ready', timeout=2).status == 200 else 1)"]
# Exec form: the sidecar is PID 1 and handles SIGTERM itself (drain, flush spans, exit 0).
ENTRYPOINT ["sidecar"]
CMD ["run", "--config", "/etc/sidecar", "--admin-address", "0.0.0.0:9901"]
