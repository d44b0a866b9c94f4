# syntax=docker/dockerfile:1
# The sidecar image: `docker build -t kuma-trace-sidecar .`
# Mount the Kuma resources at /etc/sidecar and name the dataplane:
#   docker run -v ./config:/etc/sidecar:ro -e SIDECAR_DATAPLANE=web-01 kuma-trace-sidecar
# Build with `--build-arg EXTRAS=demo` for the demo services' libraries (OpenTelemetry, py_zipkin).

FROM python:3.11-slim AS build
ARG EXTRAS=""
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".${EXTRAS:+[$EXTRAS]}"

FROM python:3.11-slim
ARG EXTRAS=""
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin sidecar
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "kuma-trace-sidecar${EXTRAS:+[$EXTRAS]}" \
    && rm -rf /wheels
USER 10001
VOLUME ["/etc/sidecar"]
EXPOSE 9901
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(0 if u.urlopen('http://127.0.0.1:9901/ready', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["sidecar"]
CMD ["run", "--config", "/etc/sidecar", "--admin-address", "0.0.0.0:9901"]
