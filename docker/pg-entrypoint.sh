#!/bin/sh
# Copies the Docker secret with the pg_mask key ring to a file only the server can read (Compose
# bind-mounts secrets with the host file's owner and mode), then hands over to the official
# entrypoint.
set -eu
secret=/run/secrets/pg_mask_keys
target=/var/lib/postgresql/pg_mask.keys
if [ -s "$secret" ]; then
  install -o postgres -g postgres -m 0600 "$secret" "$target"
elif [ ! -s "$target" ]; then
  echo "pg-entrypoint: no key: provide the Docker secret pg_mask_keys (see README, 'Docker')" >&2
  exit 1
fi
exec docker-entrypoint.sh "$@"
