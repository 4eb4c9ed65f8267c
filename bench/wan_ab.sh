#!/usr/bin/env bash
# wan_ab.sh — sync over an emulated far link, alternating with aria2c (see bench/README.md).
#
#   bench/wan_ab.sh --bin LHYMIRROR [--scale 0.02] [--rtt-ms 200] [--rate-kibps 1024] [--pairs 5]
#
# nginx serves the shared harness's corpus on 127.0.0.1 behind ../shared/bench/lib/wanproxy.py
# (round-trip time and a per-connection rate); bench/ab.py then runs `aria2c -j4 -x4 -s4` and
# `lhymirror sync --jobs 8` in turn and prints the median of the pairwise ratios. The link
# limit (bytes / (connections x rate) + request round trips) is printed for reference.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SHARED=${SHARED_BENCH:-$HERE/../../shared/bench}
[ -d "$SHARED" ] || SHARED=$HERE/../../../shared/bench
[ -f "$SHARED/corpus.py" ] || { echo "wan_ab.sh: no shared bench harness (set SHARED_BENCH)" >&2; exit 2; }
BIN=""; SCALE=0.02; RTT=200; RATE=1024; PAIRS=5; JOBS=8
while [ $# -gt 0 ]; do
    case $1 in
        --bin) BIN=$2; shift 2;; --scale) SCALE=$2; shift 2;; --rtt-ms) RTT=$2; shift 2;;
        --rate-kibps) RATE=$2; shift 2;; --pairs) PAIRS=$2; shift 2;; --jobs) JOBS=$2; shift 2;;
        -h|--help) sed -n '2,9p' "$0"; exit 0;; *) echo "wan_ab.sh: unknown option $1" >&2; exit 2;;
    esac
done
[ -x "$BIN" ] || { echo "wan_ab.sh: --bin LHYMIRROR is required" >&2; exit 2; }
# Compiled modules, as an installed wheel has them: with PYTHONDONTWRITEBYTECODE set (some
# sandboxes set it) an editable install compiles ~100 modules on every run, 25-60 ms each time.
unset PYTHONDONTWRITEBYTECODE
"$(dirname "$BIN")/python" -m compileall -q "$("$(dirname "$BIN")/python" -c \
    'import lhymirror, os; print(os.path.dirname(lhymirror.__file__))')" >/dev/null || true
PY=$(command -v python3)
W=${TMPDIR:-/tmp}/lhymirror-wan-ab; mkdir -p "$W"
CORPUS=$("$PY" "$SHARED/corpus.py" "$W/corpus" --scale "$SCALE" | tail -n 1)
MAN="$CORPUS/bench-manifest.toml"
PORT=$("$SHARED/serve.sh" start "$CORPUS" "$W/srv")
rm -f "$W/pport"
"$PY" "$SHARED/lib/wanproxy.py" --upstream "127.0.0.1:$PORT" --rtt-ms "$RTT" --rate-kbps "$RATE" \
    --port-file "$W/pport" >/dev/null 2>&1 &
PROXY=$!
trap 'kill $PROXY 2>/dev/null; "$SHARED/serve.sh" stop "$W/srv" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 50); do [ -s "$W/pport" ] && break; sleep 0.1; done
PP=$(cat "$W/pport")
"$PY" "$SHARED/lib/mkinputs.py" "$CORPUS" "$PP" "$W/in"
"$PY" - "$CORPUS" "$RATE" "$RTT" "$JOBS" <<'PYEOF'
import json, sys
root, rate, rtt, jobs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
files = json.load(open(f"{root}/corpus.json"))["files"]
total = sum(f["size"] for f in files)
for c in (4, jobs):
    limit = total / (rate * 1024 * c) + len(files) * rtt / 1000 / c
    print(f"link limit at {c} connections: {limit:.2f} s ({total} B, {len(files)} files, "
          f"RTT {rtt} ms, {rate} KiB/s per connection)")
PYEOF
"$PY" "$HERE/ab.py" --pairs "$PAIRS" --json "$W/results.jsonl" \
    --prepare "rm -rf '$W/a' '$W/l' && mkdir -p '$W/a' '$W/l'" \
    --a "aria2c -j4 -x4 -s4" "cd '$W/a' && aria2c -q -d . -i '$W/in/aria2.txt' -j 4 -x 4 -s 4 -k 1M" \
    --b "lhymirror sync --jobs $JOBS" "$BIN sync --manifest '$MAN' --root '$W/l' --mirror http://127.0.0.1:$PP --jobs $JOBS -q" \
    --check "[ ! -d '$W/l' ] || [ -z \"\$(ls -A '$W/l')\" ] || $PY '$SHARED/lib/checkmirror.py' '$MAN' '$W/l' >/dev/null"
