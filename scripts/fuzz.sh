#!/usr/bin/env bash
# Run every cargo-fuzz target of fuzz/ for a bounded time.
#
#   scripts/fuzz.sh [seconds-per-target] [target ...]     (default 60 s, all targets)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Corpora grow in fuzz/corpus/<target> (git-ignored), seeded from
# fuzz/seeds/<target> and, for workflow definitions, schemas/examples/workflows.
# A crash leaves its input in fuzz/artifacts/<target>/ and makes this script
# exit 1; turn it into a regression test in the normal suite (a unit test
# feeding that input) before fixing it. Prints executions per target.

set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    targets=(cloudevent_decode workflow_definition cel_mapping)
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz)" >&2
    exit 2
fi

status=0
summary=()
for t in "${targets[@]}"; do
    corpus="fuzz/corpus/$t"
    mkdir -p "$corpus" "fuzz/artifacts/$t"
    seeds=()
    [[ -d "fuzz/seeds/$t" ]] && seeds+=("fuzz/seeds/$t")
    [[ "$t" == workflow_definition ]] && seeds+=("schemas/examples/workflows")
    log="fuzz/artifacts/$t/last-run.log"
    echo "== $t: ${seconds}s" >&2
    # -rss_limit_mb: a definition or expression that makes the parser balloon is a finding too.
    if cargo +nightly fuzz run "$t" "$corpus" "${seeds[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1; then
        result="ok"
    else
        result="CRASH (see $log and fuzz/artifacts/$t/)"
        status=1
    fi
    execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1 || true)
    rate=$(grep -Eo 'exec/s: *[0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+$' || true)
    cov=$(grep -Eo 'cov: *[0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+$' || true)
    summary+=("$(printf '%-22s %-6s execs %-10s exec/s %-7s cov %s' "$t" "$result" "${execs:-?}" "${rate:-?}" "${cov:-?}")")
done
printf '%s\n' "${summary[@]}"
exit $status
