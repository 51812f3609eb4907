# callpop: a static binary on a minimal non-root image, with config.example.yaml
# as its default configuration (/etc/callpop/callpop.yaml; mount your own there,
# or override keys with CALLPOP_* environment variables).
#
#   docker build -t callpop --build-arg VERSION=$(git describe --tags --always) .
#
# The listeners face the container's network (ENV below), so the image does not
# start until you say who may connect (docs/security.md):
#   - CALLPOP_ROUTER_FASTAGI_ALLOW: the Asterisk servers allowed on FastAGI (4573),
#     as callpop sees them (behind Docker's port publishing that may be the bridge's
#     gateway: a refused connection is logged with its peer);
#   - CALLPOP_API_KEYS (a JSON list) and each key's CALLPOP_API_KEYS_<NAME>_KEY: the
#     HTTP API answers other hosts only with a key (Authorization: Bearer <key>);
#     `-e NAME` without a value passes the variable from your shell, keeping the
#     secret off the command line;
#   - CALLPOP_CRM_SOURCES: `callpop run` refuses the embedded sample customers.
#
#   export CALLPOP_API_KEYS_DIALPLAN_KEY="$(openssl rand -hex 32)" CRM_TOKEN=...
#   docker run --rm -p 8080:8080 -p 4573:4573 \
#     -e CALLPOP_ROUTER_FASTAGI_ALLOW=10.0.0.5/32,10.0.0.6/32 \
#     -e CALLPOP_API_KEYS='[{"name":"dialplan","scopes":["route"]}]' \
#     -e CALLPOP_API_KEYS_DIALPLAN_KEY \
#     -e CALLPOP_CRM_SOURCES='[{"name":"main","kind":"http","url":"https://crm.example/api/customers?phone={e164}","headers":{"Authorization":"Bearer ${CRM_TOKEN}"}}]' \
#     -e CRM_TOKEN \
#     callpop
#
# FreeSWITCH in outbound mode (its socket application connects to 8084) also needs
# the FreeSWITCH servers' addresses and the event socket's password:
#
#   export CALLPOP_PBX_FREESWITCH_PASSWORD=...
#   docker run --rm -p 8080:8080 -p 8084:8084 \
#     -e CALLPOP_PBX_KIND=freeswitch \
#     -e CALLPOP_PBX_FREESWITCH_ALLOW=10.0.0.7/32 \
#     -e CALLPOP_PBX_FREESWITCH_ADDRESS=10.0.0.7:8021 \
#     -e CALLPOP_PBX_FREESWITCH_PASSWORD \
#     -e CALLPOP_ROUTER_FASTAGI_LISTEN= \
#     -e CALLPOP_API_KEYS='[{"name":"ops","scopes":["lookup","cache","metrics"]}]' \
#     -e CALLPOP_API_KEYS_OPS_KEY \
#     -e CALLPOP_CRM_SOURCES='[{"name":"main","kind":"http","url":"https://crm.example/api/customers?phone={e164}","headers":{"Authorization":"Bearer ${CRM_TOKEN}"}}]' \
#     -e CRM_TOKEN \
#     callpop
#
# Add as needed: -e CALLPOP_CACHE_REDIS_ADDRS=redis:6379 -e CALLPOP_CACHE_KEY_SECRET
# (a shared cache); -v /srv/callpop/tls:/etc/callpop/tls:ro
# -e CALLPOP_TLS_CERT_FILE=/etc/callpop/tls/tls.crt -e CALLPOP_TLS_KEY_FILE=/etc/callpop/tls/tls.key
# (TLS); -e CALLPOP_POPPER_TOKEN_SECRET (the agent panel). Mounted files must be
# readable by the image's user, nonroot (65532). cmd/callpop/docker_test.go checks
# these commands against config.example.yaml and the ENV below.

# Base images are pinned by digest (the tag says what it is, the digest which
# one): a rebuild gets the same bases until the pins are changed in a commit.
FROM golang:1.26.5@sha256:3aff6657219a4d9c14e27fb1d8976c49c29fddb70ba835014f477e1c70636647 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# Static (CGO off), paths trimmed, the version from the build; the same line
# as README's. callpop.buildinfo is `go version -m`: the Go version, the
# build settings and every module with its checksum (the image's SBOM).
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/callpop ./cmd/callpop \
 && /out/callpop check-config --config config.example.yaml \
 && go version -m /out/callpop > /out/callpop.buildinfo

# distroless/static: CA certificates, /etc/passwd with "nonroot" (65532), no shell.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:d093aa3e30dbadd3efe1310db061a14da60299baff8450a17fe0ccc514a16639
COPY --from=build /out/callpop /usr/local/bin/callpop
COPY --from=build /out/callpop.buildinfo /usr/local/share/callpop/buildinfo.txt
COPY --from=build /src/config.example.yaml /etc/callpop/callpop.yaml
WORKDIR /etc/callpop
# In a container the listeners must face the network, not loopback.
ENV CALLPOP_CONFIG=/etc/callpop/callpop.yaml \
    CALLPOP_LISTEN=0.0.0.0:8080 \
    CALLPOP_ROUTER_FASTAGI_LISTEN=0.0.0.0:4573 \
    CALLPOP_PBX_FREESWITCH_LISTEN=0.0.0.0:8084
# 8080 HTTP (lookups, /v1/route, agent panel, probes, metrics); 4573 FastAGI;
# 8084 FreeSWITCH outbound Event Socket (pbx.freeswitch.mode: outbound).
EXPOSE 8080 4573 8084
USER nonroot:nonroot
# No shell or curl here: callpop asks its own /readyz, on the port and with
# the scheme (HTTPS with CALLPOP_TLS_CERT_FILE) of the same configuration.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/callpop", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/callpop"]
CMD ["run"]
