# callpop: a static binary on a minimal non-root image, with config.example.yaml
# as its default configuration (/etc/callpop/callpop.yaml; mount your own there,
# or override keys with CALLPOP_* environment variables).
#
#   docker build -t callpop --build-arg VERSION=$(git describe --tags --always) .
#   docker run --rm -p 8080:8080 callpop

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/callpop ./cmd/callpop \
 && /out/callpop check-config --config config.example.yaml

# distroless/static: CA certificates, /etc/passwd with "nonroot" (65532), no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/callpop /usr/local/bin/callpop
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
ENTRYPOINT ["/usr/local/bin/callpop"]
CMD ["run"]
