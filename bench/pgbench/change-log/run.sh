#!/usr/bin/env bash
# What writing the change log costs at the database alone: pgbench's Create and Update (the
# store's statements) on a fresh table of 100,000 visitors per variant — no change log; the
# statement trigger of migration 20261209000001 (its webhook check kept, its deliveries not); a
# row trigger instead; the log's table written by the statement itself (a data-modifying WITH);
# the position on the visitor's row (migration 20261212000001); an append-only log of updates
# (Update only). Usage: run.sh [database URL] (a scratch database, dropped at the end).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
url=${1:-postgres://postgres@127.0.0.1:5432/change_log_costs}
admin=${url%/*}/postgres
psql -q "$admin" -c "DROP DATABASE IF EXISTS ${url##*/}" -c "CREATE DATABASE ${url##*/}"
run() {
  [ "$2" = - ] && return
  pgbench -n -M prepared -c 32 -j 2 -T 10 -D ids=100000 -f "$here/$2" "$url" 2>/dev/null \
    | sed -n "s/^tps = \([0-9.]*\).*/$1 $(basename "$2"): \1 tps/p"
}
# variant schema extra create update
while read -r variant schema extra create update; do
  psql -q "$url" -f "$here/$schema" >/dev/null 2>&1
  [ "$extra" = - ] || psql -q "$url" -f "$here/$extra" >/dev/null
  run "$variant" "$create"
  run "$variant" "$update"
done <<'VARIANTS'
none schema.sql - ../create.sql ../update.sql
statement-trigger schema.sql statement-trigger.sql ../create.sql ../update.sql
row-trigger schema.sql row-trigger.sql ../create.sql ../update.sql
with schema.sql - create-with.sql update-with.sql
position position-schema.sql position-trigger.sql ../create.sql update-position.sql
append append-schema.sql - - update-append.sql
VARIANTS
psql -q "$admin" -c "DROP DATABASE ${url##*/}"
