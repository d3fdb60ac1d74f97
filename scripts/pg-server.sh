#!/usr/bin/env bash
# A throwaway PostgreSQL server for benchmarks, made the way the tests make theirs
# (registry/tests/common/postgres.rs): Debian's binaries (scripts/setup-system.sh installs them),
# a cluster initdb'ed into DIR/data (trust authentication, no fsync), served on 127.0.0.1:PORT
# and a Unix socket in DIR, with one database, `toolmesh`. PostgreSQL refuses to run as root, so
# as root it runs as `nobody` (DIR is handed to it).
#
#   scripts/pg-server.sh start DIR PORT   # prints postgres://postgres@127.0.0.1:PORT/toolmesh
#   scripts/pg-server.sh pid DIR          # the postmaster's process id
#   scripts/pg-server.sh stop DIR
set -euo pipefail

usage() { echo "usage: $0 start DIR PORT | pid DIR | stop DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
command=$1 dir=$(realpath -m "$2")

bin=${TOOLMESH_PG_BIN:-}
if [ -z "$bin" ]; then
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  [ -n "$bin" ] || bin=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
fi
[ -x "$bin/initdb" ] || { echo "PostgreSQL's initdb is not installed (looked in TOOLMESH_PG_BIN, /usr/lib/postgresql/*/bin, PATH); run bash scripts/setup-system.sh" >&2; exit 1; }

as_server() {
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid 65534 --regid 65534 --clear-groups -- env LC_ALL=C HOME="$dir" "$@"
  else
    env LC_ALL=C HOME="$dir" "$@"
  fi
}

case $command in
  start)
    [ $# -eq 3 ] || usage
    port=$3
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown 65534:65534 "$dir"
    cd "$dir"
    as_server "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log"
    as_server "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -F" start >/dev/null
    as_server "$bin/createdb" -h "$dir" -p "$port" -U postgres toolmesh
    echo "postgres://postgres@127.0.0.1:$port/toolmesh"
    ;;
  pid)
    head -1 "$dir/data/postmaster.pid"
    ;;
  stop)
    cd "$dir"
    as_server "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null
    ;;
  *) usage ;;
esac
