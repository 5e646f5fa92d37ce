#!/usr/bin/env bash
# Runs one etcd v3 load (braid-bench, benches/loadgen) against a 3-member braid
# cluster and then a 3-member etcd cluster on 127.0.0.1, with the same flags,
# data dirs on the same disk and the same load sent to each cluster's leader,
# and writes a markdown table of braid vs etcd to benches/results/latest.md.
#
#   benches/compare.sh [--quick] [--duration SECONDS] [--memory-keys N] [--output FILE] [--note TEXT]
#
# --quick: 3 s per case and 100k keys for the memory case (default 10 s, 1M keys).
# --note: a line for the results header (say, what else ran on the machine).
# Environment: CARGO_TARGET_DIR (where the binaries are built, default ./target),
# JOBS (cargo -j, default 2), BENCH_BASE_PORT (default 23790: client ports
# BASE..BASE+2, peer ports BASE+10..BASE+12), KEEP=1 keeps the data dirs and logs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
COMMAND=benches/compare.sh
NOTE=
DURATION=10
MEMORY_KEYS=1000000
OUTPUT=$ROOT/benches/results/latest.md
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) DURATION=3; MEMORY_KEYS=100000; COMMAND+=" $1" ;;
        --duration) DURATION=$2; COMMAND+=" $1 $2"; shift ;;
        --memory-keys) MEMORY_KEYS=$2; COMMAND+=" $1 $2"; shift ;;
        --output) OUTPUT=$2; shift ;;
        --note) NOTE=$2; shift ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
JOBS=${JOBS:-2}
BASE_PORT=${BENCH_BASE_PORT:-23790}
CLIENT_PORTS=("$BASE_PORT" $((BASE_PORT + 1)) $((BASE_PORT + 2)))
PEER_PORTS=($((BASE_PORT + 10)) $((BASE_PORT + 11)) $((BASE_PORT + 12)))
ENDPOINTS=127.0.0.1:${CLIENT_PORTS[0]},127.0.0.1:${CLIENT_PORTS[1]},127.0.0.1:${CLIENT_PORTS[2]}
CLOCK_TICKS=$(getconf CLK_TCK)

log() { echo "compare.sh: $*" >&2; }

# --- binaries -----------------------------------------------------------------
(cd "$ROOT" && cargo build --release -j "$JOBS" --bin braid && cargo build --release -j "$JOBS" -p braid-bench)
BRAID=$TARGET/release/braid
BENCH=$TARGET/release/braid-bench
if ! command -v etcd > /dev/null; then
    SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update
    $SUDO apt-get install -y etcd-server
fi
ETCD=$(command -v etcd)

# Data dirs under the target dir: the same disk for both systems.
mkdir -p "$TARGET"
WORK=$(mktemp -d "$TARGET/compare.XXXXXX")
PIDS=()

# --- cluster control ----------------------------------------------------------
stop_cluster() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2> /dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2> /dev/null || true
        wait "$pid" 2> /dev/null || true
    done
    PIDS=()
}

cleanup() {
    stop_cluster
    if [ "${KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# start_cluster PROGRAM LABEL: three members with etcd's flags; waits for a leader.
start_cluster() {
    local program=$1 label=$2 member cluster=
    for member in 0 1 2; do
        cluster+="${cluster:+,}m$member=http://127.0.0.1:${PEER_PORTS[member]}"
    done
    rm -rf "${WORK:?}/$label"
    mkdir -p "$WORK/$label"
    for member in 0 1 2; do
        "$program" --name "m$member" --data-dir "$WORK/$label/m$member" \
            --listen-client-urls "http://127.0.0.1:${CLIENT_PORTS[member]}" \
            --advertise-client-urls "http://127.0.0.1:${CLIENT_PORTS[member]}" \
            --listen-peer-urls "http://127.0.0.1:${PEER_PORTS[member]}" \
            --initial-advertise-peer-urls "http://127.0.0.1:${PEER_PORTS[member]}" \
            --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "bench-$label" \
            > "$WORK/$label/m$member.log" 2>&1 &
        PIDS+=($!)
    done
    for _ in $(seq 60); do
        if "$BENCH" status --endpoints "$ENDPOINTS" > /dev/null 2>&1 \
            && "$BENCH" put --endpoints "$ENDPOINTS" --target leader --total 10 > /dev/null 2>&1; then
            log "$label: leader $("$BENCH" status --endpoints "$ENDPOINTS" 2> /dev/null)"
            return
        fi
        sleep 0.5
    done
    log "$label did not elect a leader within 30 s; logs:"
    tail -n 20 "$WORK/$label"/m*.log >&2
    exit 1
}

# CPU ticks (utime + stime, fields 14 and 15 of /proc/PID/stat) of the members.
cpu_ticks() {
    local pid total=0 ticks
    for pid in "${PIDS[@]}"; do
        # Fields after "pid (comm) ": utime and stime are the 12th and 13th.
        ticks=$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }') || ticks=0
        total=$((total + ticks))
    done
    echo "$total"
}

rss_kib() {
    local pid total=0 kib
    for pid in "${PIDS[@]}"; do
        kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status") || kib=0
        total=$((total + kib))
    done
    echo "$total"
}

# field JSON NAME: a number or string field of braid-bench's flat JSON object.
field() {
    sed -n 's/.*"'"$2"'":\("[^"]*"\|[^,}]*\).*/\1/p' <<< "$1" | tr -d '"'
}

declare -A RESULT

# run_case SYSTEM CASE braid-bench-arguments...: one measured case.
run_case() {
    local system=$1 case=$2 before after json
    shift 2
    log "$system: $case"
    before=$(cpu_ticks)
    json=$("$BENCH" "$@" --endpoints "$ENDPOINTS" --target leader --json 2>> "$WORK/bench-$system.log") || true
    after=$(cpu_ticks)
    RESULT[$system,$case,json]=$json
    RESULT[$system,$case,cpu]=$(awk -v ticks=$((after - before)) -v hz="$CLOCK_TICKS" 'BEGIN { printf "%.2f", ticks / hz }')
    log "$system: $case: $json (server CPU ${RESULT[$system,$case,cpu]} s)"
}

CASES=(put-1 put-16 put-64 put-256 put-paced-10k range-l-64 range-s-64 txn-put-64 watch)
declare -A CASE_TITLE=(
    [put-1]="put, 1 client" [put-16]="put, 16 clients" [put-64]="put, 64 clients"
    [put-256]="put, 256 clients" [put-paced-10k]="put, 256 clients paced to ≤10,000/s" [range-l-64]="range linearizable, 64" [range-s-64]="range serializable, 64"
    [txn-put-64]="txn-put, 64 clients" [watch]="watch: 64 watchers, puts paced to ≤1000/s"
)

run_matrix() {
    local system=$1 common=(--duration "$DURATION" --key-size 8 --val-size 256 --key-space 100000)
    run_case "$system" put-1 put --clients 1 --conns 1 "${common[@]}"
    run_case "$system" put-16 put --clients 16 --conns 1 "${common[@]}"
    run_case "$system" put-64 put --clients 64 --conns 4 "${common[@]}"
    run_case "$system" put-256 put --clients 256 --conns 16 "${common[@]}"
    # Issue 7's "sustained 10k writes/s with p99 under 10 ms": a rate, not a closed loop.
    run_case "$system" put-paced-10k put --clients 256 --conns 16 --rate 10000 "${common[@]}"
    run_case "$system" range-l-64 range --consistency linearizable --clients 64 --conns 4 "${common[@]}"
    run_case "$system" range-s-64 range --consistency serializable --clients 64 --conns 4 "${common[@]}"
    run_case "$system" txn-put-64 txn-put --clients 64 --conns 4 "${common[@]}"
    run_case "$system" watch watch-latency --watchers 64 --clients 4 --conns 4 --rate 1000 "${common[@]}"
}

# The memory case on a fresh cluster: resident memory after loading MEMORY_KEYS keys.
run_memory() {
    local system=$1
    RESULT[$system,memory,rss_before]=$(rss_kib)
    run_case "$system" memory put --clients 64 --conns 4 --keys sequential --key-space "$MEMORY_KEYS" \
        --total "$MEMORY_KEYS" --key-size 8 --val-size 256 --duration 900
    RESULT[$system,memory,rss]=$(rss_kib)
    RESULT[$system,memory,disk]=$(du -sk "$WORK/$system" | awk '{ print $1 }')
}

for system in braid etcd; do
    if [ $system = braid ]; then program=$BRAID; else program=$ETCD; fi
    start_cluster "$program" $system
    run_matrix $system
    stop_cluster
    start_cluster "$program" $system
    run_memory $system
    stop_cluster
done

# --- the table ----------------------------------------------------------------
# cell BRAID ETCD DECIMALS: "braid / etcd (ratio×)", n/a where a side has no number.
cell() {
    awk -v braid="$1" -v etcd="$2" -v decimals="$3" 'BEGIN {
        format = "%." decimals "f"
        b = (braid == "" ? "n/a" : sprintf(format, braid))
        e = (etcd == "" ? "n/a" : sprintf(format, etcd))
        ratio = (braid != "" && etcd != "" && etcd + 0 != 0) ? sprintf(" (%.2f×)", braid / etcd) : ""
        printf "%s / %s%s", b, e, ratio
    }'
}

# metric SYSTEM CASE NAME: a number from a case's result, empty when it has none.
metric() {
    local json=${RESULT[$1,$2,json]:-}
    if [ -z "$json" ] || [ -n "$(field "$json" fatal)" ]; then return; fi
    case $3 in
        per_cpu) awk -v ops="$(field "$json" ops)" -v cpu="${RESULT[$1,$2,cpu]}" \
            'BEGIN { if (cpu > 0) printf "%.1f", ops / cpu }' ;;
        *) field "$json" "$3" ;;
    esac
}

# memory_row TITLE BRAID_KIB ETCD_KIB: one row of the memory table, in MiB.
memory_row() {
    local braid etcd
    braid=$(awk -v kib="$2" 'BEGIN { print kib / 1024 }')
    etcd=$(awk -v kib="$3" 'BEGIN { print kib / 1024 }')
    echo "| $1 | $(cell "$braid" "$etcd" 0 | as_columns) |"
}

# "braid / etcd (ratio)" as three table columns.
as_columns() { sed 's| / | \| |; s| (\(.*\))| \| \1|'; }

or_na() { if [ -n "$1" ]; then echo "$1"; else echo n/a; fi; }

write_table() {
    local case system note
    echo "# braid vs etcd $("$ETCD" --version 2> /dev/null | awk '/etcd Version/ { print $3 }')"
    echo
    echo "- machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)," \
        "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); braid $(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo unknown)"
    echo "- command: \`$COMMAND\` ($DURATION s per case;" \
        "keys of 8 B over 100,000 keys, values of 256 B)"
    echo "- both clusters: 3 members on 127.0.0.1, default flags, data dirs on the same disk; all load" \
        "goes to the leader (braid-bench --target leader). The load generator and the 3 members share" \
        "the machine's cores."
    [ -n "$NOTE" ] && echo "- note: $NOTE"
    echo
    echo "Each cell is braid / etcd (braid ÷ etcd). Throughput and ops per server CPU second: higher is" \
        "better; latency: lower is better. Server CPU is utime + stime of the 3 members during the case."
    echo
    echo "| case | throughput ops/s | ops per server CPU s | p50 ms | p99 ms | errors |"
    echo "|---|---|---|---|---|---|"
    for case in "${CASES[@]}"; do
        echo "| ${CASE_TITLE[$case]} | $(cell "$(metric braid "$case" throughput)" "$(metric etcd "$case" throughput)" 0)" \
            "| $(cell "$(metric braid "$case" per_cpu)" "$(metric etcd "$case" per_cpu)" 0)" \
            "| $(cell "$(metric braid "$case" p50_ms)" "$(metric etcd "$case" p50_ms)" 2)" \
            "| $(cell "$(metric braid "$case" p99_ms)" "$(metric etcd "$case" p99_ms)" 2)" \
            "| $(or_na "$(metric braid "$case" errors)") / $(or_na "$(metric etcd "$case" errors)") |"
    done
    echo
    echo "The watch row's throughput is Puts per second; its latency is Put sent → event delivered" \
        "to each of the 64 watchers."
    echo
    echo "| memory: $MEMORY_KEYS keys of 256 B loaded (64 clients) | braid | etcd | braid ÷ etcd |"
    echo "|---|---|---|---|"
    memory_row "resident memory of the 3 members before loading (MiB)" "${RESULT[braid,memory,rss_before]}" "${RESULT[etcd,memory,rss_before]}"
    memory_row "resident memory of the 3 members after loading (MiB)" "${RESULT[braid,memory,rss]}" "${RESULT[etcd,memory,rss]}"
    memory_row "data dirs of the 3 members on disk after loading (MiB)" "${RESULT[braid,memory,disk]}" "${RESULT[etcd,memory,disk]}"
    echo "| load throughput (ops/s) | $(cell "$(metric braid memory throughput)" "$(metric etcd memory throughput)" 0 | as_columns) |"
    echo
    for system in braid etcd; do
        for case in "${CASES[@]}" memory; do
            note=$(field "${RESULT[$system,$case,json]:-}" fatal)
            [ -z "$note" ] && note=$(field "${RESULT[$system,$case,json]:-}" first_error)
            [ -n "$note" ] && echo "- $system, $case: $note"
        done
    done
    return 0
}

mkdir -p "$(dirname "$OUTPUT")"
write_table > "$OUTPUT"
cat "$OUTPUT"
log "wrote $OUTPUT"
