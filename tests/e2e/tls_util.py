"""TLS fixtures for the end-to-end suite: a throw-away CA, leaf certificates
it signs (ECDSA P-256, with the names and addresses asked for), and an nginx
that serves HTTPS with one of them, started under `procs` (stopped by PID).

Everything is made with the openssl CLI in the test's tmp dir and lives two
days; nothing here trusts or touches the system store.
"""
import subprocess

from conftest import free_port, wait_port


def _openssl(*args):
    subprocess.run(["openssl", *[str(a) for a in args]], check=True, capture_output=True,
                   timeout=60)


def make_ca(d, name="hscale-test-ca"):
    """A self-signed CA: returns (cert, key) paths."""
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-days", "2", "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", key, "-out", cert)
    return cert, key


def make_leaf(d, ca, name="localhost", sans=("DNS:localhost", "IP:127.0.0.1")):
    """A server certificate for `sans` signed by ca=(cert, key): (cert, key)."""
    cert, key, csr, ext = (d / f"{name}.pem", d / f"{name}.key", d / f"{name}.csr",
                           d / f"{name}.ext")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-subj", f"/CN={name}", "-keyout", key, "-out", csr)
    ext.write_text("subjectAltName=" + ",".join(sans) + "\n"
                   "extendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
             "-days", "2", "-extfile", ext, "-out", cert)
    return cert, key


def access_log_path(d, port):
    return d / f"access-{port}.log"


def start_nginx_tls(procs, d, cert, key, protocols="TLSv1.2 TLSv1.3", body="ok\n", port=None):
    """nginx (1 worker, keep-alive without a request limit, a shared session
    cache for resumption) serving `body` over HTTPS on a free loopback port
    (or `port`); /once answers and closes the connection (one request per
    connection, so every request needs a handshake). Each request is logged
    to access_log_path(d, port) as "<requests on its connection> <session
    reused: r or .> <user agent>". Returns the port."""
    port = port or free_port()
    conf = d / f"nginx-{port}.conf"
    conf.write_text(f"""
worker_processes 1;
pid {d}/nginx-{port}.pid;
error_log {d}/nginx-{port}.err warn;
events {{ worker_connections 1024; }}
http {{
  log_format conn '$connection_requests $ssl_session_reused $http_user_agent';
  access_log {d}/access-{port}.log conn;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  ssl_protocols {protocols};
  ssl_session_cache shared:tls:1m;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{ return 200 "{body.strip()}\\n"; }}
    location /once {{ keepalive_requests 1; return 200 "once\\n"; }}
  }}
}}
""")
    p = procs.start(["nginx", "-c", conf, "-p", d, "-g", "daemon off;"], name="nginx")
    wait_port(port, proc=p)
    return port
