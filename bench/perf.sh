#!/usr/bin/env bash
# perf.sh — lhymirror against same-run references, alternating A B A B (see bench/README.md).
#
#   bench/perf.sh [--scale 0.5] [--pairs 5] [--steps sync,pack,verify,verify-fast]
#                 [--bin PATH] [--work DIR]
#
# Extra steps (limits, not run by default): sync-durable (the Python mirror with fsync, as
# lhymirror does), sync-durable-j4 (the same on 4 threads, lhymirror's concurrency),
# pack-durable (tar then fsync of the archive), hash2 (the two sha256 passes of a verify on two
# threads, nothing else), pack-limit (the work of a pack in plain Python: each file read once,
# its sha256 and CRC-32 taken, written out, the output hashed on a second thread, fsync at the
# end), import (start-up: python with lhymirror's imports for verify / sync vs python with
# bagit / requests).
#
# Uses ../shared/bench (corpus.py, serve.sh, lib/pybench.py, lib/mkinputs.py) when it sits
# beside this repository, or SHARED_BENCH=DIR. The Python running this script must have
# requests and bagit (the project's test extra has both). Loopback only.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SHARED=${SHARED_BENCH:-$HERE/../../shared/bench}
[ -d "$SHARED" ] || SHARED=$HERE/../../../shared/bench
[ -f "$SHARED/corpus.py" ] || { echo "perf.sh: no shared bench harness (set SHARED_BENCH)" >&2; exit 2; }
SCALE=0.5; PAIRS=5; STEPS="sync,pack,verify,verify-fast"; BIN=$(command -v lhymirror || true)
WORK=${TMPDIR:-/tmp}/lhymirror-perf
while [ $# -gt 0 ]; do
    case $1 in
        --scale) SCALE=$2; shift 2;;
        --pairs) PAIRS=$2; shift 2;;
        --steps) STEPS=$2; shift 2;;
        --bin) BIN=$2; shift 2;;
        --work) WORK=$2; shift 2;;
        -h|--help) sed -n '2,17p' "$0"; exit 0;;
        *) echo "perf.sh: unknown option $1" >&2; exit 2;;
    esac
done
[ -x "$BIN" ] || { echo "perf.sh: no lhymirror (pass --bin PATH)" >&2; exit 2; }
# Compiled modules, as an installed wheel has them: with PYTHONDONTWRITEBYTECODE set (some
# sandboxes set it) an editable install compiles ~100 modules on every run, 25-60 ms each time.
unset PYTHONDONTWRITEBYTECODE
"$(dirname "$BIN")/python" -m compileall -q "$("$(dirname "$BIN")/python" -c \
    'import lhymirror, os; print(os.path.dirname(lhymirror.__file__))')" >/dev/null || true
PY=$(command -v python3)
has() { case ",$STEPS," in *",$1,"*) return 0;; *) return 1;; esac; }
AB="$PY $HERE/ab.py --pairs $PAIRS --json $WORK/results.jsonl"
mkdir -p "$WORK"; rm -f "$WORK/results.jsonl"
CORPUS=$("$PY" "$SHARED/corpus.py" "$WORK/corpus" --scale "$SCALE" | tail -n 1)
MAN="$CORPUS/bench-manifest.toml"
PORT=$("$SHARED/serve.sh" start "$CORPUS" "$WORK/srv")
trap '"$SHARED/serve.sh" stop "$WORK/srv" >/dev/null 2>&1 || true' EXIT
"$PY" "$SHARED/lib/mkinputs.py" "$CORPUS" "$PORT" "$WORK/inputs"
echo "== corpus $(du -sh "$CORPUS" | cut -f1) at scale $SCALE, $PAIRS pairs, $(nproc) cores, $(date -u +%FT%TZ)"
echo "== hashlib sha256 alone over the corpus payload (one core):"
"$PY" - "$CORPUS" <<'PYEOF'
import hashlib, os, sys, time
total = 0; t = time.perf_counter(); c0 = time.process_time()
for root, _, files in os.walk(sys.argv[1]):
    for name in files:
        with open(os.path.join(root, name), "rb", buffering=0) as f:
            h = hashlib.sha256()
            while chunk := f.read(1 << 20):
                h.update(chunk); total += len(chunk)
print(f"   {total/1e6:.0f} MB in {time.perf_counter()-t:.3f} s wall, {time.process_time()-c0:.3f} s CPU")
PYEOF
echo "== two sha256 passes on two threads vs one pass on one thread (in memory, 600 MiB each; best of 3):"
"$PY" - <<'PYEOF'
import hashlib, os, threading, time
buf = os.urandom(1 << 20)
def work():
    h = hashlib.sha256()
    for _ in range(600):
        h.update(buf)
best = {}
for _ in range(3):
    for n in (1, 2):
        threads = [threading.Thread(target=work) for _ in range(n)]
        t = time.perf_counter()
        for th in threads: th.start()
        for th in threads: th.join()
        best[n] = min(best.get(n, 1e9), time.perf_counter() - t)
print(f"   1 thread {best[1]:.3f} s, 2 threads {best[2]:.3f} s: two passes cost {best[2]/best[1]:.2f}x one pass in wall time")
PYEOF
REF="$WORK/ref"
if has sync; then
    echo "== sync --jobs 4 vs the minimal verified Python mirror (2 threads)"
    $AB --prepare "rm -rf '$WORK/d' && mkdir -p '$WORK/d' && sync" \
        --a "pybench mirror x2" "$PY $SHARED/lib/pybench.py mirror $WORK/inputs/mirror.tsv $WORK/d --threads 2" \
        --b "lhymirror sync -j4" "$BIN sync --manifest $MAN --root $WORK/d --mirror http://127.0.0.1:$PORT --jobs 4"
fi
if has sync-durable; then
    echo "== sync --jobs 4 vs the minimal verified Python mirror with fsync (the durable limit)"
    $AB --prepare "rm -rf '$WORK/d' && mkdir -p '$WORK/d' && sync" \
        --a "pybench mirror x2 --fsync" "$PY $SHARED/lib/pybench.py mirror $WORK/inputs/mirror.tsv $WORK/d --threads 2 --fsync" \
        --b "lhymirror sync -j4" "$BIN sync --manifest $MAN --root $WORK/d --mirror http://127.0.0.1:$PORT --jobs 4"
fi
if has sync-durable-j4; then
    echo "== sync --jobs 4 vs the minimal verified Python mirror with fsync on 4 threads (the same work at the same concurrency)"
    $AB --prepare "rm -rf '$WORK/d' && mkdir -p '$WORK/d' && sync" \
        --a "pybench mirror x4 --fsync" "$PY $SHARED/lib/pybench.py mirror $WORK/inputs/mirror.tsv $WORK/d --threads 4 --fsync" \
        --b "lhymirror sync -j4" "$BIN sync --manifest $MAN --root $WORK/d --mirror http://127.0.0.1:$PORT --jobs 4"
fi
if has pack || has pack-durable || has pack-limit || has verify || has verify-fast || has hash2; then
    rm -rf "$REF"; "$BIN" sync --manifest "$MAN" --root "$REF" --mirror "http://127.0.0.1:$PORT" >/dev/null
    YEARDIR=$(find "$REF" -mindepth 1 -maxdepth 1 -type d | head -n 1)
fi
REPRO="--sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner"
if has pack; then
    echo "== pack (zip) vs GNU tar with reproducible flags on the same files"
    $AB --prepare "rm -rf '$WORK/p' && mkdir -p '$WORK/p' && sync" \
        --a "tar repro" "tar $REPRO -cf $WORK/p/a.tar -C $YEARDIR ." \
        --b "lhymirror pack" "$BIN pack --manifest $MAN --root $REF --out $WORK/p"
fi
if has pack-durable; then
    echo "== pack (zip) vs GNU tar with reproducible flags, then fsync of the archive (durable)"
    $AB --prepare "rm -rf '$WORK/p' && mkdir -p '$WORK/p' && sync" \
        --a "tar repro + fsync" "tar $REPRO -cf $WORK/p/a.tar -C $YEARDIR . && sync $WORK/p/a.tar" \
        --b "lhymirror pack" "$BIN pack --manifest $MAN --root $REF --out $WORK/p"
fi
if has verify || has verify-fast || has hash2; then
    rm -rf "$WORK/a" "$WORK/x"; mkdir -p "$WORK/a"
    "$BIN" pack --manifest "$MAN" --root "$REF" --out "$WORK/a" >/dev/null
    ARCHIVE=$(find "$WORK/a" -name '*.zip' | head -n 1)
    "$BIN" unpack "$ARCHIVE" "$WORK/x/bag" >/dev/null
    BAG=$(find "$WORK/x" -name bagit.txt -printf '%h\n' | head -n 1)
fi
if has verify; then
    echo "== verify ARCHIVE vs bagit --validate on the extracted bag"
    $AB --a "bagit --validate" "$PY -m bagit --validate $BAG" \
        --b "lhymirror verify" "$BIN verify $ARCHIVE"
fi
if has verify-fast; then
    echo "== verify --fast vs bagit --validate --fast"
    $AB --a "bagit --validate --fast" "$PY -m bagit --validate --fast $BAG" \
        --b "lhymirror verify --fast" "$BIN verify --fast $ARCHIVE"
fi
if has pack-limit; then
    echo "== pack vs its work alone in Python: read, sha256 + CRC-32 of each file, write, sha256 of the output on a second thread, fsync"
    cat > "$WORK/packlimit.py" <<'PYEOF'
import hashlib, os, queue, sys, threading, zlib
root, out = sys.argv[1], sys.argv[2]
chunks = queue.Queue(maxsize=8)
def writer():
    h = hashlib.sha256()
    with open(out, "wb") as f:
        while (b := chunks.get()) is not None:
            f.write(b); h.update(b)
        f.flush(); os.fsync(f.fileno())
t = threading.Thread(target=writer); t.start()
for dirpath, dirs, files in sorted(os.walk(root)):
    dirs.sort()
    for name in sorted(files):
        h, crc = hashlib.sha256(), 0
        with open(os.path.join(dirpath, name), "rb", buffering=0) as f:
            while b := f.read(1 << 20):
                h.update(b); crc = zlib.crc32(b, crc); chunks.put(b)
chunks.put(None); t.join()
PYEOF
    $AB --prepare "rm -rf '$WORK/p' && mkdir -p '$WORK/p' && sync" \
        --a "pack work in Python" "$PY $WORK/packlimit.py $YEARDIR $WORK/p/a.bin" \
        --b "lhymirror pack" "$BIN pack --manifest $MAN --root $REF --out $WORK/p"
fi
if has hash2; then
    echo "== verify ARCHIVE vs its hashing alone: sha256 of the members and of the archive, two threads"
    cat > "$WORK/hash2.py" <<'PYEOF'
import hashlib, struct, sys, threading, zipfile
path = sys.argv[1]
def whole():
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
t = threading.Thread(target=whole); t.start()
with zipfile.ZipFile(path) as z, open(path, "rb", buffering=0) as f:
    for info in z.infolist():
        h = hashlib.sha256()
        if info.compress_type == zipfile.ZIP_STORED:  # the raw bytes: no CRC, no zipfile layers
            f.seek(info.header_offset + 26)
            name_len, extra_len = struct.unpack("<HH", f.read(4))
            f.seek(info.header_offset + 30 + name_len + extra_len)
            left = info.compress_size
            while left and (chunk := f.read(min(left, 1 << 20))):
                h.update(chunk); left -= len(chunk)
        else:
            with z.open(info) as m:
                while chunk := m.read(1 << 20):
                    h.update(chunk)
t.join()
PYEOF
    $AB --a "sha256 x2 (2 threads)" "$PY $WORK/hash2.py $ARCHIVE" \
        --b "lhymirror verify" "$BIN verify $ARCHIVE"
fi
if has import; then
    echo "== start-up: imports of verify / sync against bagit / requests"
    LPY=$(dirname "$BIN")/python
    $AB --a "python -c 'import bagit'" "$PY -c 'import bagit'" \
        --b "verify --fast imports" "$LPY -c 'import lhymirror.cli.verify_cmd, lhymirror.archive.verify'"
    $AB --a "python -c 'import requests'" "$PY -c 'import requests'" \
        --b "sync imports" "$LPY -c 'import lhymirror.cli.sync_cmd, lhymirror.fetch.sync, lhymirror.manifest.model'"
fi
echo "== results: $WORK/results.jsonl"
