# Varnish peer for bench/cache_vs_peers.sh: the built-in VCL (it honours
# the origin's Cache-Control and coalesces misses on its waiting list).
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "@BACKEND@"; }
