#!/usr/bin/env bash
# braid's whole test suite: formatting, lints, every test, and a check that the
# code still builds for the simulator. CI runs exactly this (.ci/run).
set -uo pipefail
cd "$(dirname "$0")"

jobs="${BRAID_TEST_JOBS:-2}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0

step() { echo; echo "== $*"; }

# The end-to-end tests drive real etcdctl and compare with a real etcd
# (Debian's etcd-client and etcd-server); install them when missing.
if ! command -v etcdctl >/dev/null 2>&1 || ! command -v etcd >/dev/null 2>&1; then
    step "installing etcd-client and etcd-server (Debian)"
    apt_prefix=""
    [ "$(id -u)" -eq 0 ] || apt_prefix="sudo"
    $apt_prefix apt-get update -qq && $apt_prefix apt-get install -y -qq etcd-client etcd-server >/dev/null \
        || echo "warning: could not install etcd-client/etcd-server; their tests will fail"
fi

# The crates.io etcd-client crate (a dev-dependency) compiles protos at build
# time: give it the protoc that the protoc-bin-vendored crate ships.
if [ -z "${PROTOC:-}" ]; then
    cargo fetch -q
    PROTOC="$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -path '*protoc-bin-vendored-linux-*/bin/protoc' -type f | head -n 1)"
    export PROTOC
fi

step "cargo fmt --check"
cargo fmt --all --check || status=1

step "cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets -j "$jobs" -- -D warnings || status=1

step "cargo test (workspace)"
cargo test --workspace -j "$jobs" 2>&1 | tee "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

step "microbenchmarks, each case once (divan test mode)"
cargo test -j "$jobs" --bench raft --bench wal --bench btree --bench mvcc || status=1

step "simulation (--cfg madsim, own target dir target/sim)"
sim_config="target.'cfg(all())'.rustflags = ['--cfg=madsim']"
cargo build --workspace --lib -j "$jobs" --config "$sim_config" --target-dir target/sim || status=1
cargo clippy -p braid-sim --lib --tests -j "$jobs" --config "$sim_config" --target-dir target/sim -- -D warnings || status=1
cargo test -p braid-sim --lib -j "$jobs" --config "$sim_config" --target-dir target/sim smoke 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

step "simulation seed sweep (sim/sweep)"
sim/sweep --seeds "${BRAID_SWEEP_SEEDS:-400}" --jobs "$jobs" 2>&1 | grep -v '^braid: ' | tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

passed=$(grep -Eo 'test result: [A-Za-z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
echo
[ "$status" -eq 0 ] && echo "suite: OK" || echo "suite: FAILED (see the sections above)"
echo "${passed} passed, ${failed} failed"
exit "$status"
