#!/usr/bin/env bash
# What writing the change log costs at the database alone: pgbench's Create and Update (the
# store's statements, ../create.sql and ../update.sql) on a fresh table of 100,000 visitors with
# no change log, with the statement trigger of migration 20261209000001 (its webhook check kept,
# its deliveries not), with a row trigger instead, and with the log written by the statement
# itself (a data-modifying WITH). Usage: run.sh [database URL] (a scratch database: its tables
# are dropped).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
url=${1:-postgres://postgres@127.0.0.1:5432/change_log_costs}
admin=${url%/*}/postgres
psql -q "$admin" -c "DROP DATABASE IF EXISTS ${url##*/}" -c "CREATE DATABASE ${url##*/}"
run() {
  pgbench -n -M prepared -c 32 -j 2 -T 10 -D ids=100000 -f "$2" "$url" 2>/dev/null \
    | sed -n "s/^tps = \([0-9.]*\).*/$1 $(basename "$2"): \1 tps/p"
}
for variant in none statement-trigger row-trigger with; do
  psql -q "$url" -f "$here/schema.sql" >/dev/null 2>&1
  case $variant in
    statement-trigger | row-trigger) psql -q "$url" -f "$here/$variant.sql" >/dev/null ;;
  esac
  if [ "$variant" = with ]; then
    run "$variant" "$here/create-with.sql"; run "$variant" "$here/update-with.sql"
  else
    run "$variant" "$here/../create.sql"; run "$variant" "$here/../update.sql"
  fi
done
psql -q "$admin" -c "DROP DATABASE ${url##*/}"
