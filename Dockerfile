# syntax=docker/dockerfile:1
#
# Build:  docker build -t infergate .
# Run:    docker run -p 8080:8080 -v "$PWD/infergate.toml:/etc/infergate/infergate.toml:ro" \
#           -e AWS_REGION -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_SESSION_TOKEN \
#           -e HF_TOKEN infergate
#
# The config is read from /etc/infergate/infergate.toml (INFERGATE_CONFIG); it
# must listen on 0.0.0.0:8080 (or set INFERGATE_HEALTHCHECK_URL to match).

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
COPY --from=build /src/target/release/infergate /usr/local/bin/infergate
COPY config/infergate.example.toml /etc/infergate/infergate.example.toml
ENV INFERGATE_CONFIG=/etc/infergate/infergate.toml \
    INFERGATE_LOG_FORMAT=json
USER nonroot:nonroot
EXPOSE 8080
# `infergate healthcheck` GETs /healthz; no shell or curl needed.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/infergate", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/infergate"]
CMD ["serve"]
