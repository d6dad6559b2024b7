#!/bin/sh
# Writes /state/admin-exists when the admin user ADMIN_EMAIL exists with an
# email-and-password login, so that a re-run of the setup Job (an
# upgrade, a retry) does not fail on `medusa user` refusing a duplicate.
set -eu
count=$(psql -XtAq -v ON_ERROR_STOP=1 -v email="$ADMIN_EMAIL" <<'SQL'
SELECT count(*)
  FROM "user" u
  JOIN provider_identity p ON p.entity_id = u.email AND p.provider = 'emailpass'
 WHERE u.email = :'email' AND u.deleted_at IS NULL;
SQL
)
if [ "$count" != "0" ]; then
  echo "the admin user ${ADMIN_EMAIL} exists"
  touch /state/admin-exists
else
  echo "the admin user ${ADMIN_EMAIL} does not exist yet"
fi
