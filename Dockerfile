# A small static image running `tokenkeeper proxy`, a drop-in for the agent-loop proxy:
#   docker build -t tokenkeeper-proxy .
#   echo "$TOKEN" | docker run -i --rm -p 127.0.0.1:18080:18080 \
#     -e TOKENKEEPER_CLIENT_TOKEN=phantom -e TARGET=https://api.anthropic.com tokenkeeper-proxy
# It listens on 0.0.0.0 inside the container, so it insists on a client token.

FROM rust:1-alpine AS build
RUN apk add --no-cache musl-dev gcc
WORKDIR /src
COPY . .
# musl targets link statically: the binary needs nothing from the image it runs in.
RUN cargo build --release --locked --bin tokenkeeper \
 && strip target/release/tokenkeeper

FROM alpine:3 AS roots
RUN apk add --no-cache ca-certificates

FROM scratch
COPY --from=roots /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /src/target/release/tokenkeeper /tokenkeeper
ENV HOME=/ \
    TOKENKEEPER_HOME=/nonexistent \
    TOKENKEEPER_LISTEN=0.0.0.0 \
    TOKENKEEPER_INSECURE_LISTEN=1 \
    LISTEN_PORT=18080 \
    TARGET=https://api.anthropic.com
USER 65534:65534
EXPOSE 18080
ENTRYPOINT ["/tokenkeeper", "proxy"]
