#!/usr/bin/env bash
# Where the CPU goes while the pipeline drains a large backlog: a system-wide perf profile taken
# during the benchmark's largest "P backlog drain" row, split by process (device, ingest, RabbitMQ,
# PostgreSQL) and, within each .NET process, by function.
#
#   bash tests/Engram.Pipeline.Benchmarks/profile.sh OUT [SECONDS] [MIN_JOURNAL_MB] [BENCHMARK ARGS...]
#
# Starts the benchmark (full unless BENCHMARK ARGS say --quick) with DOTNET_PerfMapEnabled=1 and
# W^X off (so perf can name JIT-compiled frames), waits for a device process whose journal file is over
# MIN_JOURNAL_MB (default 1000: the 1M-row backlog; 150 finds the quick run's 100k), records SECONDS
# (default 60) of perf samples, and writes OUT/report.txt. The benchmark's own table goes to OUT/table.txt.
set -euo pipefail
out=$(realpath -m "$1"); seconds=${2:-60}; min_mb=${3:-1000}; shift $(( $# < 3 ? $# : 3 ))
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
command -v perf >/dev/null || { apt-get install -y linux-perf >/dev/null; }

dotnet build -c Release -v q "$root/Engram.Pipeline.sln"
DOTNET_PerfMapEnabled=1 DOTNET_EnableWriteXorExecute=0 dotnet run -c Release --no-build --project "$root/tests/Engram.Pipeline.Benchmarks" -- "$@" \
    >"$out/table.txt" 2>"$out/progress.txt" &
bench=$!

device=""
while [[ -z "$device" ]]; do
    kill -0 "$bench" 2>/dev/null || { echo "The benchmark ended before a large backlog drain started." >&2; exit 1; }
    for pid in $(pgrep -f Engram.Pipeline.Device.dll || true); do
        # A process may end between pgrep and here.
        db=$( (tr '\0' '\n' </proc/"$pid"/environ) 2>/dev/null | sed -n 's/^ConnectionStrings__DeviceDb=Data Source=//p' || true)
        if [[ "$db" == *drain-* && -f "$db" ]] && (( $(stat -c %s "$db" 2>/dev/null || echo 0) > min_mb * 1048576 )); then device=$pid; fi
    done
    sleep 1
done
ingest=$(pgrep -n -f Engram.Pipeline.CloudIngest.dll)
echo "Profiling device $device and ingest $ingest for $seconds s" >&2
# Who is who, while they still run: the pipeline's processes and the servers' (the rest is "other").
{
    echo "0 idle"; echo "$device device"; echo "$ingest ingest"
    for pid in $(pgrep -f Engram.Pipeline.Benchmarks/bin || true); do echo "$pid benchmark-harness"; done
    for pid in $(pgrep -x beam.smp || true); do echo "$pid rabbitmq"; done
    for pid in $(pgrep -x postgres || true); do echo "$pid postgresql"; done
} >"$out/roles.txt"
perf record -a -g -F 499 -o "$out/perf.data" -- sleep "$seconds" 2>/dev/null

{
    echo "# CPU samples over $seconds s, by process (device pid $device, ingest pid $ingest)"
    perf script -i "$out/perf.data" -F pid 2>/dev/null | python3 -c '
import collections, sys
roles = dict(line.split() for line in open(sys.argv[1]))
counts = collections.Counter(roles.get(line.strip(), "other") for line in sys.stdin if line.strip())
total = sum(counts.values())
for role, n in counts.most_common():
    print(f"{100 * n / total:6.1f}%  {role}")
' "$out/roles.txt"
    echo; echo "# by library (leaf frame), as a share of each process"
    perf script -i "$out/perf.data" -F pid,ip,dso --max-stack 1 2>/dev/null | python3 -c '
import collections, re, sys
roles = dict(line.split() for line in open(sys.argv[1]))
counts, pid = collections.defaultdict(collections.Counter), None
for line in sys.stdin:
    if not line.startswith("\t"):
        pid = line.split()[0] if line.strip() else pid
        continue
    library = re.search(r"\(([^)]*)\)", line)
    if library and roles.get(pid) in ("device", "ingest"):
        counts[roles[pid]][library.group(1).split("/")[-1]] += 1
for role, libraries in counts.items():
    total = sum(libraries.values())
    print(role + ": " + ", ".join(f"{name} {100 * n / total:.0f}%" for name, n in libraries.most_common(7)))
' "$out/roles.txt"
    for pid in "$device" "$ingest"; do
        echo; echo "# pid $pid: functions by self CPU, as a share of that process"
        perf report -i "$out/perf.data" --no-children --pid "$pid" --percentage relative --sort dso,sym --stdio -g none 2>/dev/null \
            | grep -E '^ +[0-9]' | head -40
    done
} >"$out/report.txt"
wait "$bench"
echo "Wrote $out/report.txt and $out/table.txt" >&2
