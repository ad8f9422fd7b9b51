#!/bin/sh
# The container's entry point: refuse to start while a required variable is unset or empty
# (naming it), then run psatriage with the container's command.
#
# PSATRIAGE_REQUIRED_ENV lists the required variables, separated by spaces. The image requires
# none (a single container keeps SQLite in /data); compose.yaml requires the database, the queue
# and the API token, which come from its env file.
set -eu

case "${1:-}" in
  --version | --help) exec psatriage "$@" ;;
esac

for name in ${PSATRIAGE_REQUIRED_ENV:-}; do
  case "$name" in
    *[!A-Za-z0-9_]* | [0-9]*)
      echo "psatriage: PSATRIAGE_REQUIRED_ENV lists '$name', which is not a variable name" >&2
      exit 2
      ;;
  esac
done
for name in ${PSATRIAGE_REQUIRED_ENV:-}; do
  if [ -z "$(printenv "$name" || true)" ]; then
    echo "psatriage: $name is not set; fix: add $name=... to the env file (deploy/psatriage.env.example lists them)" >&2
    exit 2
  fi
done

exec psatriage "$@"
