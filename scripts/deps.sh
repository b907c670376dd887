#!/usr/bin/env bash
# Installs every Debian package that building, testing and benchmarking
# hscale needs. Does nothing when all are present. Without root it prints the
# one apt-get line to run instead.
#
# Daemons in these packages (nginx, redis, postgresql, haproxy, prometheus, varnish)
# are never started by the install: the tests start their own copies on
# loopback ports and stop them by PID, so a policy-rc.d blocks service starts
# for the duration of the install.
set -euo pipefail

PACKAGES=(
  # build
  gcc make pkg-config
  libfyaml-dev libjansson-dev libsqlite3-dev libpq-dev libhiredis-dev
  libssl-dev zlib1g-dev liburing-dev libdeflate-dev libbrotli-dev   # gateway compression
  # unit tests, sanitizers, fuzzing, lint
  libcriterion-dev clang libclang-rt-14-dev cppcheck
  # end-to-end tests: real peers
  python3 python3-pytest python3-requests python3-yaml
  postgresql redis-server redis-sentinel prometheus nginx haproxy wrk   # redis-sentinel: the cache failover tests
  varnish                   # bench/cache_vs_peers.sh: the cache peers (with nginx proxy_cache, HAProxy cache)
  chromium openssl          # openssl: test_security.py makes its certificates
  sslscan                   # test_gateway_tls.py: no weak protocol or cipher on the defaults
  strace                    # test_gateway_tls.py: the system calls one TLS connection costs the gateway
  # the seeds' stacks (examples/, end-to-end tests and benchmarks; Celery on a Redis broker)
  python3-fastapi python3-uvicorn python3-locust nodejs python3-celery python3-redis
  python3-websockets python3-brotli   # the gateway's WebSocket and compression tests
  time
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "hscale: missing packages; run as root:" >&2
  echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "deps: installing ${missing[*]}"
policy=/usr/sbin/policy-rc.d
had_policy=0
[ -e "$policy" ] && had_policy=1
if [ $had_policy -eq 0 ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod +x "$policy"
  trap 'rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when they are missing or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -n1)" ]; then
  apt-get update -q
fi
apt-get install -y -q --no-install-recommends "${missing[@]}"
