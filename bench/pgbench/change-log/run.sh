#!/usr/bin/env bash
# What writing the change log costs at the database alone: pgbench's Create and Update (the
# store's statements, ../create.sql and ../update.sql) on a fresh database of 100,000 visitors
# per variant, migrated by the project's own migrations (sqlx-cli: `make tools-sqlx`) —
#   none               before the change log (20261208000001)
#   statement-trigger  its statement triggers (20261210000002)
#   row-trigger        a row trigger instead
#   with               its table written by the statement itself (a data-modifying WITH)
#   position           the position on the visitor's row (20261212000001, today's)
#   append             an append-only log of updates beside HOT updates (Update only)
# Update without a position to move is ../update.sql less its change_* assignments.
# Usage: run.sh [database URL] (a scratch database, dropped at the end).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
migrations=$here/../../../crates/visitor-store/migrations
url=${1:-postgres://postgres@127.0.0.1:5432/change_log_costs}
admin=${url%/*}/postgres
scripts=$(mktemp -d)
trap 'rm -rf "$scripts"' EXIT

returning='RETURNING id, name, email, phone, notes, external_id, banned, created, version'
sed '/^    change_\|^    changed_at/d' "$here/../update.sql" > "$scripts/update-plain.sql"
wrap() { # the plain Update as a WITH, then this statement on its row v, then the row
  sed "s/^UPDATE visitors SET/WITH v AS (UPDATE visitors SET/; s/^$returning;/$returning), c AS ($1) SELECT * FROM v;/" \
    "$scripts/update-plain.sql"
}
wrap "UPDATE visitor_changes SET changed_at = now(), transaction = pg_current_xact_id(), sequence = nextval('visitor_change_sequence') FROM v WHERE visitor_id = v.id" \
  > "$scripts/update-with.sql"
wrap "INSERT INTO visitor_change_log SELECT pg_current_xact_id(), nextval('visitor_change_sequence'), v.id, now() FROM v" \
  > "$scripts/update-append.sql"
cp "$here/../create.sql" "$here/../update.sql" "$here/create-with.sql" "$scripts/"

run() {
  [ "$2" = - ] && return
  pgbench -n -M prepared -c 32 -j 2 -T 10 -D ids=100000 -f "$scripts/$2" "$url" 2>/dev/null \
    | sed -n "s/^tps = \([0-9.]*\).*/$1 $2: \1 tps/p"
}
while read -r variant migration extra create update; do
  psql -q "$admin" -c "DROP DATABASE IF EXISTS ${url##*/}" -c "CREATE DATABASE ${url##*/}"
  sqlx migrate run --source "$migrations" --database-url "$url" --target-version "$migration" >/dev/null
  [ "$extra" = - ] || psql -q "$url" -f "$here/$extra" >/dev/null
  psql -q "$url" -f "$here/seed.sql" >/dev/null
  run "$variant" "$create"
  run "$variant" "$update"
done <<'VARIANTS'
none 20261208000001 - create.sql update-plain.sql
statement-trigger 20261210000002 - create.sql update-plain.sql
row-trigger 20261210000002 row-trigger.sql create.sql update-plain.sql
with 20261210000002 no-triggers.sql create-with.sql update-with.sql
position 20261212000001 - create.sql update.sql
append 20261208000001 append.sql - update-append.sql
VARIANTS
psql -q "$admin" -c "DROP DATABASE ${url##*/}"
