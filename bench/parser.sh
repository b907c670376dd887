#!/usr/bin/env bash
# parser.sh -- builds bench/parser_bench.c at -O2 into build/bench/ and runs
# it: request-parser throughput against a plain memchr line scan (~3 s).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${BUILD:-build}/bench"
mkdir -p "$out"
${CC:-cc} -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Wshadow -Isrc \
    bench/parser_bench.c src/http/parser.c src/http/http_names.c -o "$out/parser_bench"
"$out/parser_bench" "${PARSER_BENCH_SECONDS:-1}"
