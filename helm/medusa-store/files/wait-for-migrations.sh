#!/bin/sh
# Waits until the migrations Job has recorded a completed `medusa db:migrate`
# for MEDUSA_IMAGE, the image this pod runs: a new image never serves (or
# creates users) on a schema it has not migrated. Reads libpq's PG* variables.
set -eu
waited=0
while :; do
  out=$(psql -XtAq -v ON_ERROR_STOP=1 -v image="$MEDUSA_IMAGE" 2>&1 <<'SQL'
SELECT 1 FROM storeprov.medusa_migrations WHERE image = :'image';
SQL
) || true
  [ "$out" = "1" ] && break
  if [ $((waited % 60)) -eq 0 ]; then
    echo "waiting for the migrations of ${MEDUSA_IMAGE} (${waited}s): ${out:-not recorded yet}"
  fi
  sleep 5
  waited=$((waited + 5))
done
echo "the database is migrated for ${MEDUSA_IMAGE}"
