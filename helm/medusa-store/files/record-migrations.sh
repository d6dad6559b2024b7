#!/bin/sh
# Records that `medusa db:migrate` (the init container before this one)
# completed for MEDUSA_IMAGE. The server and the setup Job wait for this
# row. The table lives in its own schema, out of Medusa's way.
set -eu
psql -Xq -v ON_ERROR_STOP=1 -v image="$MEDUSA_IMAGE" <<'SQL'
CREATE SCHEMA IF NOT EXISTS storeprov;
CREATE TABLE IF NOT EXISTS storeprov.medusa_migrations (
  image       text PRIMARY KEY,
  migrated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO storeprov.medusa_migrations (image) VALUES (:'image')
  ON CONFLICT (image) DO UPDATE SET migrated_at = now();
SQL
echo "recorded the migrations of ${MEDUSA_IMAGE}"
