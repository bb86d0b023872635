# syntax=docker/dockerfile:1
#
# autopilot-mysql: a MySQL-family server that runs itself under ContainerPilot.
#
#   docker build -t autopilot-mysql .                          # Percona Server 8.4 + Percona XtraBackup 8.4
#   docker build -t autopilot-mysql:mariadb --build-arg FLAVOUR=mariadb .   # MariaDB 11.4 + mariabackup
#
# FLAVOUR is also what the image sets MYSQL_FLAVOUR to: `mysql` (Percona Server, the default) or `mariadb`.
# Everything is pinned: base images by version (and by digest where one could be checked), ContainerPilot and
# age by module version (the Go checksum database verifies the download), XtraBackup by package version.
# Nothing is fetched with curl or wget, and no secret is baked in: every setting comes from the environment at
# run time.
ARG FLAVOUR=mysql

# ---- autopilot: `deno task compile` builds it with the permission set in deno.json (-P=autopilot) ----------
# The stage runs on the target platform, so the binary is built for the target architecture.
FROM denoland/deno:2.9.6@sha256:2014dc167ece617ef7e7ba40631ac2234c59e75ce693e7cc2dc2602b3c87859d AS autopilot
WORKDIR /src
COPY deno.json deno.lock ./
COPY mod.ts commands.ts ./
COPY src/ src/
COPY hooks/ hooks/
# --frozen: the npm packages are exactly the ones deno.lock names, checked against its integrity hashes.
RUN deno install --frozen && deno task compile && ./autopilot --version

# ---- ContainerPilot (the maintained fork), cross-compiled for the target ----------------------------------
FROM --platform=$BUILDPLATFORM golang:1.26.5-bookworm@sha256:1ecb7edf62a0408027bd5729dfd6b1b8766e578e8df93995b225dfd0944eb651 AS containerpilot
ARG TARGETOS=linux
ARG TARGETARCH
ARG CONTAINERPILOT_MODULE=github.com/Autopilot-Pattern-Revisited/containerpilot
# v0.0.1, not the v4.0.0 tag: the module path lacks the /v4 suffix the go command needs for it.
ARG CONTAINERPILOT_VERSION=v0.0.1
# age (https://age-encryption.org), the reference implementation, for BACKUP_ENCRYPTION_KEY: the go command
# checks the module against the checksum database like ContainerPilot.
ARG AGE_VERSION=v1.3.1
# Empty: Go's default module proxy, with its checksum database. `--build-arg GOPROXY=direct` fetches the
# module from its repository instead (still checked against the checksum database).
ARG GOPROXY
ENV CGO_ENABLED=0 GOTOOLCHAIN=local
RUN GOOS="$TARGETOS" GOARCH="$TARGETARCH" go install -trimpath \
      -ldflags "-s -w -X ${CONTAINERPILOT_MODULE}/version.Version=${CONTAINERPILOT_VERSION}" \
      "${CONTAINERPILOT_MODULE}@${CONTAINERPILOT_VERSION}" \
    && GOOS="$TARGETOS" GOARCH="$TARGETARCH" go install -trimpath -ldflags "-s -w" \
      "filippo.io/age/cmd/age@${AGE_VERSION}" "filippo.io/age/cmd/age-keygen@${AGE_VERSION}" \
    && bin="$(go env GOPATH)/bin" \
    && if [ -x "$bin/containerpilot" ]; then d="$bin"; else d="$bin/${TARGETOS}_${TARGETARCH}"; fi \
    && cp "$d/containerpilot" "$d/age" "$d/age-keygen" /

# ---- FLAVOUR=mysql: Percona Server 8.4 with Percona XtraBackup 8.4 from Percona's repository --------------
FROM percona/percona-server:8.4.10-10.1 AS runtime-mysql
# age and age-keygen (built with ContainerPilot above): BACKUP_ENCRYPTION_KEY, BACKUP_ENCRYPTION_RECIPIENTS.
COPY --from=containerpilot /age /age-keygen /usr/bin/
ARG XTRABACKUP_VERSION=8.4.0-6.1
# Installing packages needs root (the base image ends as mysql); the last stage says why the image stays root.
# hadolint ignore=DL3002
USER 0
# The base image carries Percona's repository tool; XtraBackup (pinned) comes from its pxb-84-lts repository,
# zstd from the base distribution's repository at whatever version the base image's release carries (DL3041).
# The loop checks every program deno.json lets autopilot run on this flavour, at the path it names.
# hadolint ignore=DL3041
RUN set -eux; \
    percona-release enable pxb-84-lts release; \
    microdnf -y install "percona-xtrabackup-84-${XTRABACKUP_VERSION}.el9" zstd procps-ng; \
    microdnf clean all; \
    rm -rf /var/cache/dnf /var/cache/yum; \
    for program in /usr/sbin/mysqld /usr/bin/xtrabackup /usr/bin/xbstream /usr/bin/zstd /usr/bin/age \
        /usr/bin/age-keygen /usr/bin/chown \
        /usr/bin/mysqlbinlog /usr/bin/mysql /usr/bin/kill; do \
      test -x "$program" || { echo "missing $program" >&2; exit 1; }; \
    done

# ---- FLAVOUR=mariadb: MariaDB 11.4 with mariabackup and mbstream (both in the official image) -------------
FROM mariadb:11.4.13@sha256:611a2fcc5fa7c6ceb8644c6f74b25ede004ff6c3a6b38c8f8c23d3bbf6c26430 AS runtime-mariadb
# age and age-keygen (built with ContainerPilot above): BACKUP_ENCRYPTION_KEY, BACKUP_ENCRYPTION_RECIPIENTS.
COPY --from=containerpilot /age /age-keygen /usr/bin/
# MariaDB 11 ships the `mysqld` name only in mariadb-server-compat; ContainerPilot's job runs `mysqld`.
# procps: /usr/bin/kill, with which autopilot crash-restarts mysqld to discard an unacknowledged semi-sync tail
# (src/errant.ts), at whatever version the base image's release carries (DL3008).
# hadolint ignore=DL3008
RUN set -eux; \
    [ -e /usr/sbin/mysqld ] || ln -s mariadbd /usr/sbin/mysqld; \
    [ -x /usr/bin/kill ] || { apt-get update; apt-get install -y --no-install-recommends procps; \
      rm -rf /var/lib/apt/lists/*; }; \
    for program in /usr/sbin/mariadbd /usr/sbin/mysqld /usr/bin/mariadb-install-db /usr/bin/mariabackup \
        /usr/bin/mbstream /usr/bin/zstd /usr/bin/age /usr/bin/age-keygen /usr/bin/chown /usr/bin/mariadb-binlog \
        /usr/bin/mariadb /usr/bin/kill; do \
      test -x "$program" || { echo "missing $program" >&2; exit 1; }; \
    done

# ---- the image --------------------------------------------------------------------------------------------
# runtime-mysql or runtime-mariadb, the stages above (hadolint does not resolve the ARG to a stage: DL3006).
# hadolint ignore=DL3006
FROM runtime-${FLAVOUR}
ARG FLAVOUR
LABEL org.opencontainers.image.title="autopilot-mysql" \
      org.opencontainers.image.description="MySQL (Percona Server 8.4) or MariaDB 11.4 that runs itself"
# autopilot's defaults put the server's configuration in its state directory (MYSQL_CNF=/var/lib/autopilot/my.cnf,
# written atomically where deno.json's permission set lets it write; /etc/my.cnf links to it so `mysql` in the
# container finds the socket) and the datadir below the volume's root (MYSQL_DATADIR=/var/lib/mysql/data, so a
# restore or a rebuild of an errant node renames it in one step).
# CONTAINERPILOT: the configuration file ContainerPilot reads.
ENV MYSQL_FLAVOUR=${FLAVOUR} \
    CONTAINERPILOT=/etc/containerpilot.json5
COPY --from=containerpilot /containerpilot /usr/local/bin/containerpilot
COPY --from=autopilot /src/autopilot /usr/local/bin/autopilot
COPY containerpilot.json5 /etc/containerpilot.json5
# Reads the container's cgroup memory limit for autopilot (which may not read /sys), then runs ContainerPilot.
COPY image/entrypoint.sh /usr/local/bin/autopilot-entrypoint
# The paths deno.json's permission set allows, with their owners: the datadir and the socket directory belong
# to mysql (mysqld drops to MYSQL_OS_USER=mysql); autopilot's state, the cnf and the local snapshot store are
# root's alone (0700: the generated root password lives there).
RUN set -eux; \
    test "$(stat -c %U /var/lib/mysql)" = mysql; \
    install -d -o mysql -g mysql -m 0755 /var/run/mysqld; \
    install -d -o root -g root -m 0700 /var/lib/autopilot /var/lib/autopilot/snapshots; \
    install -d -m 1777 /tmp; \
    rm -f /etc/my.cnf; \
    ln -s /var/lib/autopilot/my.cnf /etc/my.cnf; \
    containerpilot -version; \
    autopilot --version; \
    test -x /usr/local/bin/autopilot-entrypoint
VOLUME ["/var/lib/mysql", "/var/lib/autopilot"]
EXPOSE 3306
# ContainerPilot and autopilot run as root; mysqld runs as mysql. autopilot must be root: it logs in to the
# local server as root through socket authentication (no password anywhere), gives restored files to mysql
# (chown), and writes the server's configuration before mysqld starts.
# hadolint ignore=DL3002
USER 0
# Docker's health is this node's own verdict (healthy in its role: a writable lock-holding primary, or a
# replica replicating within MAX_REPLICATION_LAG), read-only: `autopilot health` would act (bootstrap, fail
# over) and race ContainerPilot's own check. The long start period covers the first bootstrap or a restore.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10m --retries=3 CMD ["autopilot", "status", "--self"]
ENTRYPOINT ["/usr/local/bin/autopilot-entrypoint"]
CMD []
