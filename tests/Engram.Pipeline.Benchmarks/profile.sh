#!/usr/bin/env bash
# Where the CPU goes in the loop at saturation: a system-wide perf profile taken during the benchmark's
# "L 4 writers, saturation" row (four devices using Engram as fast as it goes, each taking in the others' rows),
# split by process (the benchmark harness, which hosts the devices, the ingest and the Engram writers; RabbitMQ;
# PostgreSQL) and, within the harness, by the part of the system and by function.
#
#   bash tests/Engram.Pipeline.Benchmarks/profile.sh OUT [SECONDS] [BENCHMARK ARGS...]
#
# Starts the benchmark (full unless BENCHMARK ARGS say --quick) with DOTNET_PerfMapEnabled=1 and W^X off (so perf
# can name JIT-compiled frames), waits until the row starts, records SECONDS (default 30) of perf samples, and writes
# OUT/report.txt. The benchmark's own table goes to OUT/table.txt.
set -euo pipefail
out=$(realpath -m "$1"); seconds=${2:-30}; shift $(( $# < 2 ? $# : 2 ))
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
command -v perf >/dev/null || { apt-get install -y linux-perf >/dev/null; }

dotnet build -c Release -v q "$root/Engram.Pipeline.sln"
DOTNET_PerfMapEnabled=1 DOTNET_EnableWriteXorExecute=0 dotnet run -c Release --no-build --project "$root/tests/Engram.Pipeline.Benchmarks" -- "$@" \
    >"$out/table.txt" 2>"$out/progress.txt" &
bench=$!

# The saturation row starts when the last offered-load row of the 4 writers reports.
until grep -q "^  L 4 writers at [0-9]*/s offered run" "$out/progress.txt" 2>/dev/null \
    && [[ $(grep -c "^  L 4 writers at" "$out/progress.txt") -ge $(grep -c "^  L 1 writer + 3 readers at" "$out/progress.txt") ]]; do
    kill -0 "$bench" 2>/dev/null || { echo "The benchmark ended before the loop's saturation row started." >&2; exit 1; }
    sleep 1
done
sleep 5
harness=$(pgrep -n -f Engram.Pipeline.Benchmarks)
echo "Profiling the loop at saturation (harness pid $harness) for $seconds s" >&2
{
    echo "0 idle"; echo "$harness harness"
    for pid in $(pgrep -x beam.smp || true); do echo "$pid rabbitmq"; done
    for pid in $(pgrep -x postgres || true); do echo "$pid postgresql"; done
} >"$out/roles.txt"
perf record -a -g -F 499 -o "$out/perf.data" -- sleep "$seconds" 2>/dev/null

{
    echo "# CPU samples over $seconds s, by process (harness pid $harness: devices, ingest and Engram writers)"
    perf script -i "$out/perf.data" -F pid 2>/dev/null | python3 -c '
import collections, sys
roles = dict(line.split() for line in open(sys.argv[1]))
counts = collections.Counter(roles.get(line.strip(), "other") for line in sys.stdin if line.strip())
total = sum(counts.values())
for role, n in counts.most_common():
    print(f"{100 * n / total:6.1f}%  {role}")
' "$out/roles.txt"
    # Native frames (SQLite, libc) carry no frame pointers, so stacks end there: samples are told apart by their leaf
    # frame, JIT-compiled .NET code by its assembly (Engram.Pipeline's by namespace).
    echo; echo "# harness samples by the part of the system their leaf frame is in"
    perf script -i "$out/perf.data" --pid "$harness" -F ip,sym,dso --max-stack 1 2>/dev/null | python3 -c '
import collections, re, sys
counts = collections.Counter()
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    m = re.match(r"\S+\s+(.*)\s+\(([^)]*)\)$", line)
    if not m:
        continue
    sym, dso = m.group(1), m.group(2)
    if "coreclr" in dso or "clrjit" in dso:
        part = "CoreCLR (GC, JIT, runtime)"
    elif "sqlite3" in dso:
        part = "SQLite: FTS5 (search index)" if re.search(r"fts5|Fts5", sym) else "SQLite: b-tree, VDBE, pager, WAL"
    elif "kernel" in dso:
        part = "kernel: scheduling (context switches, yields, wake-ups)" if re.search(r"sched|switch|spin_unlock|irqentry|futex|yield|wake", sym) else "kernel: file I/O and other"
    elif dso.split("/")[-1].startswith("libc.so"):
        part = "libc: malloc/free" if re.search(r"malloc|free|unlink_chunk|tcache", sym) else "libc: memcmp/memmove/locks"
    elif "perf-" in dso and dso.endswith(".map") or "doublemapper" in dso or dso.endswith(".dll"):
        a = re.search(r"\[([A-Za-z0-9.]+)\]\s", sym)
        asm = a.group(1) if a else "unnamed"
        if asm.startswith("Engram.Pipeline"):
            ns = re.search(r"\] Engram\.Pipeline\.(\w+(?:\.\w+)?)", sym)
            asm = "Engram.Pipeline." + (ns.group(1) if ns else "?")
        part = f".NET code: {asm}"
    else:
        part = "other: " + dso.split("/")[-1]
    counts[part] += 1
total = sum(counts.values())
for part, n in counts.most_common(18):
    print(f"{100 * n / total:6.1f}%  {part}")
'
    echo; echo "# harness functions by self CPU"
    perf report -i "$out/perf.data" --no-children --pid "$harness" --percentage relative --sort dso,sym --stdio -g none 2>/dev/null \
        | grep -E '^ +[0-9]' | head -40
} >"$out/report.txt"
wait "$bench"
echo "Wrote $out/report.txt and $out/table.txt" >&2
