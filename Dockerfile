# Berth's own image. With a registry: `docker build -t berth .` compiles inside
# Docker from the official images. Without one (CI, air-gapped hosts):
# scripts/image.sh makes a Debian 13 base with debootstrap and hands this
# file the binaries and site built on the host (BUILD_IMAGE then already holds
# /out, and the build stage skips compiling).
#
# Run: docker run -p 3000:3000 -e DATABASE_URL=... -e REDIS_URL=... \
#        -e BERTH_SECRET_KEY=$(openssl rand -hex 32) -e BERTH_PUBLIC_URL=https://berth.example.com \
#        -v /var/run/docker.sock:/var/run/docker.sock --group-add "$(stat -c %g /var/run/docker.sock)" berth
# Berth runs as the unprivileged user `berth` (uid 10001); --group-add gives it
# the Docker socket and nothing else.

# Debian 13: its postgresql-client-17 dumps PostgreSQL servers up to 17.
ARG BASE_IMAGE=debian:trixie-slim
ARG BUILD_IMAGE=rust:1.95-trixie

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY . .
# The same scripts/build.sh as development (its tools come from registries).
RUN if [ ! -x /out/berth ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends nodejs npm python3 python3-venv brotli \
      && PROFILE=release scripts/build.sh \
      && mkdir -p /out \
      && cp target/release/berth /out/berth \
      && cp -r target/site /out/site; \
    fi

FROM ${BASE_IMAGE}
# A base made by scripts/image.sh has these already; an official one gets them.
RUN if ! command -v pg_dump >/dev/null || ! command -v git >/dev/null || ! command -v tini >/dev/null \
        || ! command -v ssh >/dev/null || [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends ca-certificates git openssh-client postgresql-client-17 tini \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/berth --create-home berth
# What this build is (scripts/image.sh passes the git commit); /api/admin/health shows it.
ARG BERTH_RELEASE=
COPY --from=build /out/berth /usr/local/bin/berth
COPY --from=build /out/site /usr/share/berth/site
ENV BERTH_LISTEN=0.0.0.0:3000 \
    BERTH_SITE_ROOT=/usr/share/berth/site \
    BERTH_DATA_DIR=/var/lib/berth \
    BERTH_MODE=production \
    BERTH_RELEASE=${BERTH_RELEASE} \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER berth
WORKDIR /var/lib/berth
EXPOSE 3000
# Probe GET /health from the orchestrator or Traefik: 200 when PostgreSQL and Redis answer.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 CMD ["/usr/local/bin/berth", "healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/berth"]
CMD ["serve"]
