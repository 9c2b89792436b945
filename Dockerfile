# syntax=docker/dockerfile:1
#
# Build:  docker build -t infergate:0.1.0 --build-arg VERSION=0.1.0 \
#           --build-arg SOURCE_URL=https://<where the repository lives> .
# Run:    docker run -p 8080:8080 -v "$PWD/infergate.toml:/etc/infergate/infergate.toml:ro" \
#           -e AWS_REGION -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_SESSION_TOKEN \
#           -e HF_TOKEN infergate
#
# The config is read from /etc/infergate/infergate.toml (INFERGATE_CONFIG); it
# must listen on 0.0.0.0:8080 (or set INFERGATE_HEALTHCHECK_URL to match).
# On Kubernetes: deploy/kubernetes (README.md, "Run it on Kubernetes").

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so they stay cached while the sources change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo fetch --locked && rm -rf src
COPY src ./src
COPY config ./config
RUN cargo build --release --locked --bin infergate \
    && strip target/release/infergate

# distroless/cc: glibc, CA certificates, a non-root user, no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
# The version defaults to Cargo.toml's (tests/kubernetes.rs checks it);
# the source URL has no default.
ARG VERSION=0.1.0
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="infergate" \
      org.opencontainers.image.description="One stable inference URL in front of Amazon SageMaker and Hugging Face Inference Endpoints" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /src/target/release/infergate /usr/local/bin/infergate
COPY config/infergate.example.toml /etc/infergate/infergate.example.toml
ENV INFERGATE_CONFIG=/etc/infergate/infergate.toml \
    INFERGATE_LOG_FORMAT=json
# uid and gid 65532; the Kubernetes Deployment runs it as that user too.
USER nonroot:nonroot
# The API, and the admin listener when server.admin_listen is set there.
EXPOSE 8080 9090
# What docker stop and the kubelet send: the gateway drains on it
# (server.shutdown_delay, then server.shutdown_grace).
STOPSIGNAL SIGTERM
# `infergate healthcheck` GETs /healthz; no shell or curl needed.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/infergate", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/infergate"]
CMD ["serve"]
