#!/bin/sh
# Waits until PostgreSQL accepts connections (it may still be initialising
# on a first install). Reads libpq's PG* variables.
set -eu
waited=0
until pg_isready -q; do
  if [ $((waited % 60)) -eq 0 ]; then
    echo "waiting for PostgreSQL at ${PGHOST}:${PGPORT} (${waited}s)"
  fi
  sleep 2
  waited=$((waited + 2))
done
