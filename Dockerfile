# Relay's container image: the static relay binary on scratch, run as uid
# 65532 with its JetStream data under /data.
#
# Build it with deploy/build-image.sh, which builds the binary with the host's
# Go and prepares the build context this file expects (a plain
# `podman build .` in the repository has no binary to copy):
#
#   relay                 CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=… -X main.commit=…"
#   ca-certificates.crt   the host's /etc/ssl/certs/ca-certificates.crt
#   relay.yaml            deploy/relay.container.yaml
#   passwd, group         the relay user and group, 65532
#   data/                 an empty directory, the data volume
#
# Nothing here runs a command in a container, and scratch needs no pull, so
# the build needs no registry and no container runtime.
# docs/deploy-image.md has a multi-stage variant that builds the binary in a
# golang image, for machines that reach a registry.
FROM scratch

ARG VERSION=dev
ARG COMMIT=unknown
ARG SOURCE=https://github.com/relaydev/relay

LABEL org.opencontainers.image.title="relay" \
      org.opencontainers.image.description="Relay: activities into NATS JetStream, delivered as signed webhooks and Salesforce records" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.source="${SOURCE}"

COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY passwd group /etc/
COPY relay.yaml /etc/relay/relay.yaml
COPY --chown=65532:65532 data /data
COPY relay /relay

# Client commands run in the container (podman exec relay /relay status)
# read the image's config.
ENV RELAY_CONFIG=/etc/relay/relay.yaml

USER 65532:65532
VOLUME ["/data"]
# ingest.listen and admin.listen of relay.yaml
EXPOSE 8080 8081

STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/relay", "healthcheck", "-c", "/etc/relay/relay.yaml"]

ENTRYPOINT ["/relay"]
CMD ["serve", "-c", "/etc/relay/relay.yaml"]
