# Spillway's container image: a multi-stage build. The builder compiles `spillway` (release) on
# the official Rust image with cargo's registry and the target dir in BuildKit cache mounts; the
# runtime stage is Debian slim with CA certificates (HTTPS upstreams are verified against the
# system store), a non-root user and the one binary. docs/DEPLOY.md explains how to run it.
#
#   DOCKER_BUILDKIT=1 docker build -t spillway:local .
#   docker run --rm -p 8080:8080 -p 127.0.0.1:9090:9090 --env-file spillway.env \
#     -v "$PWD/spillway.toml:/etc/spillway/spillway.toml:ro" spillway:local
#
# RUST_IMAGE and RUNTIME_IMAGE may name other (e.g. mirrored) images of the same Debian release.
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
# The target dir is a cache mount (kept between builds, not in the layer), so the binary is
# copied out of it in the same step, without its line tables (function names stay for
# backtraces): about a quarter of the size.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p spillway \
    && install -D -m 0755 target/release/spillway /out/spillway \
    && strip --strip-debug /out/spillway

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin spillway \
    && install -d -o spillway -g spillway -m 0750 /var/log/spillway
COPY --from=builder /out/spillway /usr/local/bin/spillway
USER 10001:10001
# 8080: the API listener of the embedded default and of deploy/compose/*.toml;
# 9090: the admin listener (/healthz, /readyz, /metrics). A mounted config must bind the admin
# listener to 0.0.0.0 (its default is loopback) for anything outside the container to reach it;
# the health check below runs inside the container and reaches either.
EXPOSE 8080 9090
# Liveness on the admin listener's /healthz, with bash's /dev/tcp (no curl in the image).
# SPILLWAY_ADMIN_PORT says where the admin listener is when a config moves it.
ENV SPILLWAY_ADMIN_PORT=9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${SPILLWAY_ADMIN_PORT} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
# SIGTERM drains ([server] drain_delay_ms, then shutdown_grace_secs): give `docker stop` at
# least their sum, e.g. `docker stop -t 40`, or `stop_grace_period` in compose.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/spillway"]
# A mounted config (its listener and [admin] bind on 0.0.0.0, e.g. deploy/compose/*.toml).
# The embedded demo cannot serve here: its documented demo key keeps it on loopback.
CMD ["serve", "--config", "/etc/spillway/spillway.toml"]
