#!/bin/sh
# example.sh -- an exec driver for `hscale control`, to copy and adapt.
#
# It runs `hscale app` instances as detached local processes, which is the
# shape of any real driver: `launch` must print the new instance's
# host:port (last line of stdout) once it has been asked to start (control
# probes readiness itself), `terminate ID ADDR` must stop it and exit 0
# when it is gone, and `list` prints "ID host:port" for every instance that
# exists, so a restarted control plane adopts them instead of starting
# duplicates. Swap the bodies for `aws ec2 run-instances`, `kubectl scale`,
# `ssh host systemctl start app@PORT`, ...
#
# control:
#   driver: exec
#   exec:
#     launch: contrib/exec-driver/example.sh launch
#     terminate: contrib/exec-driver/example.sh terminate
#     list: contrib/exec-driver/example.sh list
#     timeout: 60s
#
# Environment from control: HSCALE_INSTANCE_ID, HSCALE_VERSION,
# HSCALE_COMMAND (the template's command), HSCALE_STATE_DIR.
# Anything on stderr is quoted in control's error when a script fails.
set -eu

dir="${HSCALE_STATE_DIR:-.}/example-driver"
mkdir -p "$dir"
bin="${HSCALE_BIN:-hscale}"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

case "${1:-}" in
launch)
    id="${HSCALE_INSTANCE_ID:?HSCALE_INSTANCE_ID is not set}"
    port=$(free_port)
    # setsid + nohup: the instance outlives this script and control itself;
    # its output goes to a file so it does not hold our stdout open.
    setsid nohup "$bin" app --listen "127.0.0.1:$port" --instance-id "$id" \
        --version "${HSCALE_VERSION:-v1}" >"$dir/$id.log" 2>&1 </dev/null &
    echo "$id 127.0.0.1:$port $!" >"$dir/$id.instance"
    echo "launched $id as pid $!" >&2
    echo "127.0.0.1:$port"
    ;;
terminate)
    id="${2:?usage: terminate ID ADDR}"
    f="$dir/$id.instance"
    if [ ! -f "$f" ]; then
        echo "no instance $id (already gone)" >&2
        exit 0
    fi
    pid=$(cut -d' ' -f3 "$f")
    kill -TERM "$pid" 2>/dev/null || true
    # The app drains on SIGTERM; give it 10 s before SIGKILL.
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$f"
    ;;
list)
    for f in "$dir"/*.instance; do
        [ -f "$f" ] || continue
        pid=$(cut -d' ' -f3 "$f")
        if kill -0 "$pid" 2>/dev/null; then
            cut -d' ' -f1,2 "$f"
        else
            rm -f "$f"
        fi
    done
    ;;
*)
    echo "usage: $0 launch | terminate ID ADDR | list" >&2
    exit 2
    ;;
esac
