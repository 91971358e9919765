#!/bin/sh
# Relay throughput with Postfix's own load tools (Debian package postfix):
#   smtp-source → smtp-sink            (baseline: what this machine does without the gateway)
#   smtp-source → mugaika → smtp-sink  (the gateway with its configured pipeline)
# Usage: benchmarks/relay_throughput.sh [MESSAGES] [SESSIONS] [SIZE_BYTES] [identity|pipeline]
#   identity: the relay core with a worker that only adds Received: (issue 3's baseline)
#   pipeline: the shipped default pipeline (auth, inspection, policy, notice)
# Prints messages/second for both and the sink's message count (zero loss check).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
messages=${1:-5000}
sessions=${2:-10}
size=${3:-5120}
mode=${4:-identity}
work=$(mktemp -d)
trap 'kill $sink_pid $gw_pid 2>/dev/null || true; rm -rf "$work"' EXIT
sink_port=26100
gw_port=26101

run_sink() {
    smtp-sink -c -u postfix 127.0.0.1:$sink_port 256 > "$work/sink.log" 2>&1 &
    sink_pid=$!
    sleep 0.5
}
sink_count() {
    sleep 1  # smtp-sink updates its counters asynchronously
    kill -TERM "$sink_pid" 2>/dev/null || true
    wait "$sink_pid" 2>/dev/null || true
    tr '\r' '\n' < "$work/sink.log" | grep -ao 'mesg=[0-9]*' | sort -t= -k2 -n | tail -1 | cut -d= -f2
}
rate() { python3 -c "import sys; print(f'{$1/$2:.0f}')"; }
now() { python3 -c 'import time; print(time.monotonic())'; }

gw_pid=""
run_sink
start=$(now)
smtp-source -s "$sessions" -l "$size" -m "$messages" -f sender@example.com \
    -t user@example.lg.jp 127.0.0.1:$sink_port
end=$(now)
direct=$(python3 -c "print($end - $start)")
direct_count=$(sink_count)
echo "direct:  $messages messages in ${direct}s = $(rate "$messages" "$direct") msg/s; sink counted $direct_count"

run_sink
flag=""
[ "$mode" = identity ] && flag="--identity"
PYTHONPATH="$root/benchmarks" "$root/.venv/bin/python" "$root/benchmarks/serve_for_bench.py" $flag \
    --listen 127.0.0.1:$gw_port --downstream 127.0.0.1:$sink_port --data-dir "$work/data" \
    > "$work/gw.log" 2>&1 &
gw_pid=$!
for _ in $(seq 50); do grep -q listening "$work/gw.log" && break; sleep 0.2; done
start=$(now)
smtp-source -s "$sessions" -l "$size" -m "$messages" -f sender@example.com \
    -t user@example.lg.jp 127.0.0.1:$gw_port
end=$(now)
via=$(python3 -c "print($end - $start)")
kill -TERM "$gw_pid"; wait "$gw_pid" 2>/dev/null || true
via_count=$(sink_count)
echo "gateway ($mode): $messages messages in ${via}s = $(rate "$messages" "$via") msg/s; sink counted $via_count"
