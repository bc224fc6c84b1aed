#!/usr/bin/env bash
# Where the CPU goes in the loop at saturation: a system-wide perf profile taken during the benchmark's
# "L 4 writers, saturation" row (four devices using Engram as fast as it goes, each taking in the others' rows),
# split by process (the benchmark harness, which hosts the devices, the ingest and the Engram writers; RabbitMQ;
# PostgreSQL) and, within the harness, by the pipeline's namespace on the stack and by function.
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
    echo; echo "# harness samples by the innermost Engram.Pipeline namespace on the stack (the part of the system that caused them)"
    perf script -i "$out/perf.data" --pid "$harness" -F ip,sym 2>/dev/null | python3 -c '
import collections, re, sys
counts, frames = collections.Counter(), []
def flush():
    if frames:
        owner = next((m.group(1) for f in frames if (m := re.search(r"Engram\.Pipeline\.(\w+(?:\.\w+)?)", f))), "no Engram.Pipeline frame (runtime, GC, thread pool, MassTransit)")
        counts[owner] += 1
    frames.clear()
for line in sys.stdin:
    if line.strip():
        frames.append(line)
    else:
        flush()
flush()
total = sum(counts.values())
for owner, n in counts.most_common(15):
    print(f"{100 * n / total:6.1f}%  {owner}")
'
    echo; echo "# harness samples by library (leaf frame)"
    perf report -i "$out/perf.data" --no-children --pid "$harness" --percentage relative --sort dso --stdio -g none 2>/dev/null \
        | grep -E '^ +[0-9]' | head -10
    echo; echo "# harness functions by self CPU"
    perf report -i "$out/perf.data" --no-children --pid "$harness" --percentage relative --sort dso,sym --stdio -g none 2>/dev/null \
        | grep -E '^ +[0-9]' | head -40
} >"$out/report.txt"
wait "$bench"
echo "Wrote $out/report.txt and $out/table.txt" >&2
