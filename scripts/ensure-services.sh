#!/usr/bin/env bash
# Make sure what the test suite talks to is here and running: bubblewrap, PostgreSQL, Redis.
set -u

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

bash "$(dirname "$0")/ensure-bwrap.sh"

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "starting Redis"
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
fi

if [ "${CI:-}" = "true" ] && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "PostgreSQL is unreachable at 127.0.0.1:5432 and CI=true: the suite needs it." >&2
  exit 1
fi
exit 0
