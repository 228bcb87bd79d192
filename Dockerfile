# threadcenter's image, built from source by official images, for machines that can
# pull them (docs/containers.md). Offline, scripts/image.sh builds the equivalent image
# from a local release build instead; both answer `threadcenter --version` alike.
#
#   docker build -t threadcenter:local .
#   docker run --rm threadcenter:local --version
#
# The image runs as an unprivileged user and its ENTRYPOINT is `threadcenter`, so the
# command is a subcommand: `server`, `client`, `run`, `report`. The server listens on
# 127.0.0.1 unless told otherwise, which inside a container reaches nothing: give it
# `server --host 0.0.0.0` to serve other containers (it then warns that it speaks
# plaintext; add --tls-cert/--tls-key, mounted in, to serve TLS).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
# The manifests first, with a placeholder crate, so the dependencies are a layer of
# their own that a source change does not rebuild.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs benches/hot_paths.rs \
    && cargo build --release --locked \
    && rm -rf src benches
COPY src ./src
COPY benches ./benches
# touch: the placeholder's artefacts are older than the real sources' copy otherwise.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && install -D target/release/threadcenter /out/threadcenter \
    && /out/threadcenter --version

FROM debian:${DEBIAN_RELEASE}-slim
ARG UID=10001
RUN groupadd --system --gid "${UID}" threadcenter \
    && useradd --system --uid "${UID}" --gid "${UID}" --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin threadcenter
COPY --from=build /out/threadcenter /usr/local/bin/threadcenter
USER ${UID}:${UID}
ENTRYPOINT ["threadcenter"]
CMD ["--help"]
