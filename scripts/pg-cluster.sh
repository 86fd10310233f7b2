#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 cluster on a free loopback port; prints its URL on stdout.
#   url=$(bash scripts/pg-cluster.sh start /tmp/pgdata)   ...   bash scripts/pg-cluster.sh stop /tmp/pgdata
# The test suite's global setup calls it when PostgreSQL 15 is installed (.ci/run installs it).
# initdb refuses root, so as root the cluster runs as the `postgres` user.
set -euo pipefail
cmd=${1:?start|stop}
data=${2:?data directory}
PGBIN=/usr/lib/postgresql/15/bin
[ -x "$PGBIN/initdb" ] || { echo "PostgreSQL 15 is not installed (apt-get install postgresql-15)" >&2; exit 3; }

as_postgres() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }

case "$cmd" in
  start)
    port=$(node -e 's=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
    mkdir -p "$data"
    [ "$(id -u)" = 0 ] && chown postgres: "$data"
    as_postgres "$PGBIN/initdb -D '$data' -A trust -U postgres --no-sync -E UTF8" >&2
    opts="-p $port -k '$data' -c listen_addresses=127.0.0.1 -c fsync=off"
    # pg_cron, when installed, must be preloaded; its jobs live in the `postgres` database.
    [ -f /usr/lib/postgresql/15/lib/pg_cron.so ] && opts="$opts -c shared_preload_libraries=pg_cron -c cron.database_name=postgres"
    as_postgres "$PGBIN/pg_ctl -D '$data' -l '$data/server.log' -w -o \"$opts\" start" >&2
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    as_postgres "$PGBIN/pg_ctl -D '$data' -m fast -w stop" >&2 || true
    rm -rf "$data"
    ;;
  *) echo "usage: $0 start|stop DATA_DIR" >&2; exit 2 ;;
esac
