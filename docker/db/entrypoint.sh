#!/usr/bin/env bash
# Start PostgreSQL for Tasker: create (or copy) the cluster, then exec the server.
#   POSTGRES_USER / POSTGRES_DB   superuser and database (default tasker / tasker)
#   POSTGRES_PASSWORD             required unless POSTGRES_HOST_AUTH_METHOD=trust
#   PGDATA                        data dir, tmpfs-friendly (default /var/lib/postgresql/data)
#   TASKER_PG_TEST_SETTINGS=1     fsync, synchronous_commit and full_page_writes off (tests only)
# The only "database system is ready to accept connections" line comes from the final server:
# initialisation runs in single-user mode, which never listens.
set -euo pipefail

INIT_DIR=/opt/tasker/init
BAKED=/opt/tasker/cluster.tar  # one file: far faster to read than ~1300 on fuse-overlayfs

die() { echo "tasker-postgres: $*" >&2; exit 2; }

single_user() {  # run SQL from stdin against database $2 of cluster $1, without listening
  postgres --single -D "$1" -j -c fsync=off -c listen_addresses='' "$2" >/dev/null
}

new_cluster() {  # initdb into $1 with superuser $2 and database $3, extensions loaded
  local dir=$1 user=$2 db=$3
  # 1 MiB WAL segments: the baked cluster (and so every stack's copy of it) is 15 MiB smaller
  initdb --no-sync --auth-local=trust --auth-host=scram-sha-256 --username="$user" \
    --encoding=UTF8 --locale=C.UTF-8 --wal-segsize=1 -D "$dir" >/dev/null
  cat "$INIT_DIR"/*.sql | single_user "$dir" template1
  if [ "$db" != postgres ]; then echo "CREATE DATABASE \"$db\" OWNER \"$user\";" | single_user "$dir" postgres; fi
  {
    echo "listen_addresses = '*'"
    echo "max_connections = 200"
    echo "shared_buffers = 128MB"
  } >> "$dir/postgresql.conf"
  echo "host all all all scram-sha-256" >> "$dir/pg_hba.conf"
}

if [ "${1:-}" = "--bake" ]; then  # image build time: the cluster that matching containers unpack
  staging=$(mktemp -d)
  new_cluster "$staging/data" tasker tasker
  tar -C "$staging/data" -cf "$2" .
  rm -rf "$staging"
  exit 0
fi

user=${POSTGRES_USER:-tasker}
db=${POSTGRES_DB:-$user}
if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]; then
  die "POSTGRES_PASSWORD is not set: give one, or POSTGRES_HOST_AUTH_METHOD=trust for no password"
fi
case "${TASKER_PG_TEST_SETTINGS:-0}" in 0|1) ;; *) die "TASKER_PG_TEST_SETTINGS must be 0 or 1";; esac

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA" && chmod 0700 "$PGDATA"
  if [ "$user" = tasker ] && [ "$db" = tasker ] && [ -s "$BAKED" ]; then
    tar -C "$PGDATA" -xf "$BAKED"
  else
    new_cluster "$PGDATA" "$user" "$db"
  fi
  if [ "${POSTGRES_HOST_AUTH_METHOD:-}" = trust ]; then
    echo "host all all all trust" > "$PGDATA/pg_hba.conf.new"
    cat "$PGDATA/pg_hba.conf" >> "$PGDATA/pg_hba.conf.new"
    mv "$PGDATA/pg_hba.conf.new" "$PGDATA/pg_hba.conf"
  fi
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    # Through stdin, never on a command line where `ps` would show it.
    printf "ALTER ROLE \"%s\" PASSWORD '%s';\n" "$user" "${POSTGRES_PASSWORD//\'/\'\'}" | single_user "$PGDATA" postgres
  fi
fi

if [ "${1:-postgres}" != postgres ]; then exec "$@"; fi
shift || true
settings=()
if [ "${TASKER_PG_TEST_SETTINGS:-0}" = 1 ]; then
  settings=(-c fsync=off -c synchronous_commit=off -c full_page_writes=off)
fi
exec postgres -D "$PGDATA" "${settings[@]}" "$@"
