#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each, one at a time, and prints a table:
# target, seconds run, executions, executions per second, crash found or not
# (after a crash: the figures up to it).
#
#   fuzz/run.sh SECONDS [TARGET...]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a toolchain that
# accepts -Z flags: rustup's nightly by default; ZT_FUZZ_TOOLCHAIN names
# another, and set but empty means the default toolchain (where no nightly
# exists: `ZT_FUZZ_TOOLCHAIN= RUSTC_BOOTSTRAP=1 fuzz/run.sh 10`).
# The checked-in seeds in fuzz/corpus/<target>/ are read but not written:
# inputs the fuzzer finds go to fuzz/target/corpus/<target>/ (ignored by git),
# crashing inputs to fuzz/artifacts/<target>/, logs to fuzz/target/logs/.
# Exits non-zero if any target crashed.
set -euo pipefail

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
fi
seconds=$1
shift
cd "$(dirname "$0")"
toolchain=()
if [[ -n ${ZT_FUZZ_TOOLCHAIN-nightly} ]]; then
    toolchain=("+${ZT_FUZZ_TOOLCHAIN-nightly}")
fi

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
fi

cargo "${toolchain[@]}" fuzz build
mkdir -p target/logs
status=0
rows=()
for t in "${targets[@]}"; do
    mkdir -p "target/corpus/$t"
    log="target/logs/$t.log"
    echo "== $t: ${seconds}s" >&2
    if cargo "${toolchain[@]}" fuzz run "$t" "target/corpus/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        >"$log" 2>&1; then
        crash=no
    else
        crash="YES (see $log and artifacts/$t/)"
        status=1
    fi
    # libFuzzer's final stats; after a crash, its last status line instead.
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    ran=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    execs=${execs:-$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$last")}
    rate=${rate:-$(sed -n 's/.*exec\/s: \([0-9]*\).*/\1/p' <<<"$last")}
    execs=${execs:-0}
    rate=${rate:-0}
    ran=${ran:-$((rate > 0 ? execs / rate : 0))}
    rows+=("$(printf '%-12s %8s %12s %9s  %s' "$t" "$ran" "$execs" "$rate" "$crash")")
done

printf '%-12s %8s %12s %9s  %s\n' target seconds executions exec/s crash
printf '%s\n' "${rows[@]}"
exit "$status"
