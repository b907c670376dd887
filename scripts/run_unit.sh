#!/usr/bin/env bash
# Runs the given Criterion test binaries; exits non-zero if any fails.
set -uo pipefail
rc=0
for t in "$@"; do "$t" --jobs 2 || rc=1; done
exit $rc
