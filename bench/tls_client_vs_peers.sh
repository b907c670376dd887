#!/usr/bin/env bash
# tls_client_vs_peers.sh -- the client side of TLS, hscale next to its peers
# in one run, interleaved rounds, medians and ratios (issue 24):
#
#  A. the load tool: wrk and `hscale bench` against the same nginx HTTPS
#     backend (ECDSA P-256, 1 worker, TLS 1.3): keep-alive req/s; a new TLS
#     connection per request (wrk -H 'Connection: close' vs --new-conn),
#     full handshakes and, for hscale, resumed (--tls-resume). Whether each
#     tool resumed is read from the backend's own log ($ssl_session_reused),
#     not taken from the tools.
#  B. https backends: hscale gateway (pool tls: true), nginx (proxy_pass
#     https, keepalive, proxy_ssl_session_reuse) and HAProxy (server ssl
#     verify required), 1 worker each, all verifying the backend's
#     certificate, in front of the same nginx; load from `hscale bench`
#     (plain HTTP to the proxy): keep-alive to the backend (/), and a backend
#     that closes after every response (/once: an upstream handshake per
#     request, resumed when the proxy reuses sessions).
#
#   bench/tls_client_vs_peers.sh     C=50 D=5s ROUNDS=3
#
# Everything runs on loopback from a temp dir; every process is stopped by
# its PID; each run is bounded by D.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HSCALE=${HSCALE_BIN:-$ROOT/build/hscale}
C=${C:-50}
D=${D:-5s}
ROUNDS=${ROUNDS:-3}

for tool in wrk nginx haproxy openssl curl; do
  command -v "$tool" >/dev/null || { echo "tls_client_vs_peers: $tool not found (run scripts/deps.sh)" >&2; exit 1; }
done
[ -x "$HSCALE" ] || { echo "tls_client_vs_peers: $HSCALE not built (make, or set HSCALE_BIN)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/tls_client_vs_peers.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_file() { for _ in $(seq 100); do [ -s "$1" ] && return 0; sleep 0.05; done; return 1; }
med() { python3 -c 'import statistics,sys; print("%.0f" % statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
ratio() { python3 -c 'import sys; print("%.2f" % (float(sys.argv[1]) / float(sys.argv[2])))' "$1" "$2"; }

# One CA, one ECDSA P-256 certificate for localhost / 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
  -keyout "$TMP/ca.key" -out "$TMP/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$TMP/srv.key" -out "$TMP/srv.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$TMP/ext"
openssl x509 -req -in "$TMP/srv.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" -CAcreateserial \
  -days 2 -extfile "$TMP/ext" -out "$TMP/srv.pem" 2>/dev/null

BE=$(port)
cat > "$TMP/backend.conf" <<EOF
worker_processes 1;
pid $TMP/backend.pid;
error_log $TMP/backend.err warn;
events { worker_connections 4096; }
http {
  log_format reused '\$ssl_session_reused';
  access_log $TMP/access.log reused buffer=256k flush=100ms;
  client_body_temp_path $TMP/body; proxy_temp_path $TMP/proxy; fastcgi_temp_path $TMP/fcgi;
  uwsgi_temp_path $TMP/uwsgi; scgi_temp_path $TMP/scgi;
  keepalive_requests 1000000;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:tls:10m;
  server {
    listen 127.0.0.1:$BE ssl reuseport backlog=4096;
    ssl_certificate $TMP/srv.pem;
    ssl_certificate_key $TMP/srv.key;
    location / { return 200 "{\"status\":\"ok\",\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n"; }
    location /once { keepalive_requests 1; return 200 "{\"status\":\"ok\"}\n"; }
  }
}
EOF
nginx -c "$TMP/backend.conf" -p "$TMP" -g 'daemon on;'
wait_file "$TMP/backend.pid"; PIDS+=("$(cat "$TMP/backend.pid")")
curl -sf --cacert "$TMP/ca.pem" "https://localhost:$BE/" >/dev/null \
  || { echo "tls_client_vs_peers: the backend did not answer" >&2; exit 1; }

# Lines the backend logged since mark: "<requests> <resumed>".
mark() { sleep 0.3; wc -l < "$TMP/access.log"; }
since() { sleep 0.3; tail -n +"$(( $1 + 1 ))" "$TMP/access.log" | awk '{n++} $1=="r"{r++} END {printf "%d %d\n", n, r}'; }
hjson() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }

URL="https://localhost:$BE"
if [ -z "${SKIP_A:-}" ]; then
echo "== A. load tool over TLS: backend nginx 1 worker, TLS 1.3 negotiated, ECDSA P-256; -c $C -t 2 -d $D, $ROUNDS rounds"
printf '%-6s %12s %12s %12s %12s %12s %9s\n' round wrk_ka hscale_ka wrk_new hscale_full hscale_resum wrk_reuse%
WK=() HK=() WN=() HN=() HR=()
for r in $(seq "$ROUNDS"); do
  wk=$(wrk -c "$C" -t 2 -d "$D" "$URL/" | awk '/Requests\/sec:/ {print $2}')
  "$HSCALE" bench "$URL/" --cacert "$TMP/ca.pem" -c "$C" -t 2 -d "$D" -q --json "$TMP/h.json" >/dev/null
  hk=$(hjson "$TMP/h.json" 'd["total"]["rps"]')
  m=$(mark)
  wn=$(wrk -c "$C" -t 2 -d "$D" -H 'Connection: close' "$URL/" | awk '/Requests\/sec:/ {print $2}')
  read -r wreq wres < <(since "$m")
  "$HSCALE" bench "$URL/" --cacert "$TMP/ca.pem" --new-conn -c "$C" -t 2 -d "$D" -q --json "$TMP/h.json" >/dev/null
  hn=$(hjson "$TMP/h.json" 'd["tls"]["handshakes_per_s"]')
  m=$(mark)
  "$HSCALE" bench "$URL/" --cacert "$TMP/ca.pem" --new-conn --tls-resume -c "$C" -t 2 -d "$D" -q --json "$TMP/h.json" >/dev/null
  hr=$(hjson "$TMP/h.json" 'd["tls"]["handshakes_per_s"]')
  read -r hreq hres < <(since "$m")
  WK+=("$wk"); HK+=("$hk"); WN+=("$wn"); HN+=("$hn"); HR+=("$hr")
  printf '%-6s %12.0f %12.0f %12.0f %12.0f %12.0f %8.1f%%   (backend saw %d of %d hscale --tls-resume handshakes resumed)\n' \
    "$r" "$wk" "$hk" "$wn" "$hn" "$hr" "$(python3 -c "print(100.0*$wres/max($wreq,1))")" "$hres" "$hreq"
done
printf '%-6s %12s %12s %12s %12s %12s\n' median "$(med "${WK[@]}")" "$(med "${HK[@]}")" "$(med "${WN[@]}")" "$(med "${HN[@]}")" "$(med "${HR[@]}")"
# wrk keeps its SSL object across reconnects (SSL_clear), so its new
# connections resume (the backend's log says so): compare it with
# --tls-resume; hscale's full handshakes have no wrk counterpart.
echo "ratios: keep-alive hscale/wrk $(ratio "$(med "${HK[@]}")" "$(med "${WK[@]}")"), new TLS connection per request, resumed: hscale --tls-resume / wrk -H 'Connection: close' $(ratio "$(med "${HR[@]}")" "$(med "${WN[@]}")"); hscale resumed/full $(ratio "$(med "${HR[@]}")" "$(med "${HN[@]}")")"

fi

# ---- B. https backends ------------------------------------------------------
GP=$(port); NP=$(port); XP=$(port)
cat > "$TMP/gw.yaml" <<EOF
gateway:
  listen: 127.0.0.1:$GP
  workers: 1
  pools:
    - name: be
      tls: true
      tls_ca_file: $TMP/ca.pem
      tls_server_name: localhost
      health: { enabled: false }
      backends: [{ address: "127.0.0.1:$BE" }]
  routes: [{ prefix: /, pool: be }]
EOF
"$HSCALE" gateway -c "$TMP/gw.yaml" > "$TMP/gw.log" 2>&1 &
PIDS+=("$!")
cat > "$TMP/proxy_nginx.conf" <<EOF
worker_processes 1;
pid $TMP/proxy_nginx.pid;
error_log $TMP/proxy_nginx.err warn;
events { worker_connections 9000; }
http {
  access_log off;
  client_body_temp_path $TMP/body; proxy_temp_path $TMP/proxy; fastcgi_temp_path $TMP/fcgi;
  uwsgi_temp_path $TMP/uwsgi; scgi_temp_path $TMP/scgi;
  keepalive_requests 1000000;
  upstream be { server 127.0.0.1:$BE; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$NP backlog=4096;
    location / {
      proxy_pass https://be; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_ssl_verify on; proxy_ssl_trusted_certificate $TMP/ca.pem;
      proxy_ssl_name localhost; proxy_ssl_server_name on; proxy_ssl_session_reuse on;
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
    }
  }
}
EOF
nginx -c "$TMP/proxy_nginx.conf" -p "$TMP" -g 'daemon on;'
wait_file "$TMP/proxy_nginx.pid"; PIDS+=("$(cat "$TMP/proxy_nginx.pid")")
cat > "$TMP/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 9000
  pidfile $TMP/haproxy.pid
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:$XP
  default_backend be
backend be
  server s1 127.0.0.1:$BE ssl verify required ca-file $TMP/ca.pem sni str(localhost) verifyhost localhost alpn http/1.1
EOF
haproxy -D -f "$TMP/haproxy.cfg" 2> "$TMP/haproxy.err" || { cat "$TMP/haproxy.err" >&2; exit 1; }
wait_file "$TMP/haproxy.pid"; PIDS+=("$(cat "$TMP/haproxy.pid")")
for wp in hscale:$GP nginx:$NP haproxy:$XP; do
  p=${wp#*:}
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/" >/dev/null && break; sleep 0.05; done
  curl -sf "http://127.0.0.1:$p/" >/dev/null || {
    echo "tls_client_vs_peers: ${wp%%:*} on $p does not answer:" >&2
    curl -s "http://127.0.0.1:$p/" >&2 || true
    cat "$TMP/gw.log" "$TMP/proxy_nginx.err" "$TMP/haproxy.err" >&2 2>/dev/null || true
    exit 1; }
done

echo
echo "== B. https backends: proxy 1 worker -> the same nginx over TLS (verified); load hscale bench -c $C -t 1 -d $D plain HTTP"
run_proxy() {   # port path -> "rps p99 backend_requests backend_resumed"
  local m; m=$(mark)
  "$HSCALE" bench "http://127.0.0.1:$1$2" -c "$C" -t 1 -d "$D" -q --json "$TMP/p.json" >/dev/null || true
  local b; b=$(since "$m")
  echo "$(hjson "$TMP/p.json" 'd["total"]["rps"]') $(hjson "$TMP/p.json" 'd["total"]["latency_ms"]["p99"]') $b $(hjson "$TMP/p.json" 'd["total"]["failures"]')"
}
for path in / /once; do
  echo "-- path $path ($([ "$path" = / ] && echo 'keep-alive to the backend' || echo 'the backend closes after each response: one upstream handshake per request'))"
  printf '%-6s %-8s %12s %9s %12s %9s %7s\n' round proxy req/s p99_ms upstream_hs resumed% fails
  GA=() NA=() XA=()
  for r in $(seq "$ROUNDS"); do
    for who in hscale nginx haproxy; do
      case $who in hscale) p=$GP;; nginx) p=$NP;; haproxy) p=$XP;; esac
      read -r rps p99 breq bres fails < <(run_proxy "$p" "$path")
      case $who in hscale) GA+=("$rps");; nginx) NA+=("$rps");; haproxy) XA+=("$rps");; esac
      if [ "$path" = /once ]; then hs=$breq; pct=$(python3 -c "print('%.1f' % (100.0*$bres/max($breq,1)))"); else hs=-; pct=-; fi
      printf '%-6s %-8s %12.0f %9.2f %12s %9s %7s\n' "$r" "$who" "$rps" "$p99" "$hs" "$pct" "$fails"
    done
  done
  echo "median req/s: hscale $(med "${GA[@]}")  nginx $(med "${NA[@]}")  haproxy $(med "${XA[@]}")  ratios hscale/nginx $(ratio "$(med "${GA[@]}")" "$(med "${NA[@]}")")  hscale/haproxy $(ratio "$(med "${GA[@]}")" "$(med "${XA[@]}")")"
done
