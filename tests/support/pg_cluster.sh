#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for keyshim's tests, listening only on loopback with
# password (SCRAM) authentication. Used by .ci/run and by developers alike.
#
#   pg_cluster.sh start DIR [PORT]   initdb into DIR (if empty), start it, print the test URL
#   pg_cluster.sh stop DIR           stop it (fast shutdown)
#   pg_cluster.sh restart DIR        restart it (tests use this to restart PostgreSQL itself)
#   pg_cluster.sh url DIR            print the test URL again
#
# As root the cluster belongs to the `postgres` user (PostgreSQL refuses to run as root);
# otherwise to whoever runs the script. The URL names a role that may create databases (each
# test gets its own) and nothing more.
set -euo pipefail

cmd=${1:?usage: pg_cluster.sh start|stop|restart|url DIR [PORT]}
dir=${2:?usage: pg_cluster.sh start|stop|restart|url DIR [PORT]}
port=${3:-54329}
role=keyshim_test

bindir=${PG_BINDIR:-}
if [[ -z $bindir ]]; then
    for candidate in /usr/lib/postgresql/*/bin; do
        [[ -x $candidate/initdb ]] && bindir=$candidate
    done
fi
if [[ -z $bindir || ! -x $bindir/initdb ]]; then
    echo "pg_cluster.sh: no PostgreSQL server binaries found (apt-get install postgresql)" >&2
    exit 1
fi

as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

url() {
    printf 'postgresql://%s:%s@127.0.0.1:%s/postgres\n' \
        "$role" "$(cat "$dir/test-password")" "$(cat "$dir/port")"
}

case $cmd in
start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres: "$dir"
    fi
    chmod 700 "$dir"
    if [[ ! -f $dir/data/PG_VERSION ]]; then
        superpass=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
        testpass=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
        as_owner sh -c "umask 077; printf '%s\n' '$superpass' > '$dir/superuser-password'"
        as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=scram-sha-256 \
            --pwfile="$dir/superuser-password" --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log"
        as_owner sh -c "cat >> '$dir/data/postgresql.conf'" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
fsync = off
synchronous_commit = on
full_page_writes = off
log_min_messages = warning
CONF
        as_owner sh -c "cat > '$dir/data/pg_hba.conf'" <<HBA
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 scram-sha-256
host    all       all   127.0.0.1/32  scram-sha-256
HBA
        printf '%s\n' "$port" >"$dir/port"
        printf '%s\n' "$testpass" >"$dir/test-password"
        chmod 600 "$dir/test-password"
    fi
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
    export PGPASSWORD
    PGPASSWORD=$(cat "$dir/superuser-password")
    if ! as_owner env PGPASSWORD="$PGPASSWORD" "$bindir/psql" -qtA -h 127.0.0.1 \
        -p "$(cat "$dir/port")" -U postgres -d postgres \
        -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'" | grep -q 1; then
        as_owner env PGPASSWORD="$PGPASSWORD" "$bindir/psql" -q -h 127.0.0.1 \
            -p "$(cat "$dir/port")" -U postgres -d postgres \
            -c "CREATE ROLE $role LOGIN CREATEDB PASSWORD '$(cat "$dir/test-password")'"
    fi
    url
    ;;
stop)
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
restart)
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m fast -w restart >/dev/null
    ;;
url)
    url
    ;;
*)
    echo "pg_cluster.sh: unknown command $cmd" >&2
    exit 2
    ;;
esac
