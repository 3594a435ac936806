# Berth's own image. Build: `docker build -t berth .`
# Run: docker run -p 3000:3000 -e DATABASE_URL=... -e REDIS_URL=... \
#        -e BERTH_SECRET_KEY=$(openssl rand -hex 32) -e BERTH_PUBLIC_URL=https://berth.example.com \
#        -v /var/run/docker.sock:/var/run/docker.sock --group-add "$(stat -c %g /var/run/docker.sock)" berth
# Berth runs as the unprivileged user `berth`; --group-add gives it the Docker socket.
# The build runs the same scripts/build.sh as development (tools from registries only).

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN PROFILE=release scripts/build.sh \
 && mkdir -p /out \
 && cp target/release/berth /out/berth \
 && cp -r target/site /out/site

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git openssh-client postgresql-client tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/berth --create-home berth
COPY --from=build /out/berth /usr/local/bin/berth
COPY --from=build /out/site /usr/share/berth/site
ENV BERTH_LISTEN=0.0.0.0:3000 \
    BERTH_SITE_ROOT=/usr/share/berth/site \
    BERTH_DATA_DIR=/var/lib/berth \
    BERTH_MODE=production
USER berth
EXPOSE 3000
# Probe GET /health from the orchestrator or Traefik: 200 when PostgreSQL and Redis answer.
ENTRYPOINT ["tini", "--", "/usr/local/bin/berth"]
CMD ["serve"]
