#!/usr/bin/env bash
# The interop suite: zt's tests against a real SPIRE 1.13.3 server and agent,
# go-spiffe v2.9.0 peers and py-spiffe 0.3.2. `.ci/run` calls this.
#
#   interop/run.sh [extra cargo test args, after --: test filters, --nocapture, ...]
#
# Builds SPIRE into ${ZT_CACHE_DIR:-$HOME/.cache/zt} when it is not there
# (about 10 minutes on 2 cores, once per machine), requires Go (the peers are
# built by the tests) and Python 3 (installs `spiffe==0.3.2` with pip when
# missing), then runs the ignored interop tests. A missing tool fails the run:
# nothing is skipped.
set -euo pipefail

cd "$(dirname "$0")/.."
total_start=$SECONDS
step_start=$SECONDS

step() {
    echo "==> $* ($(date -u +%H:%M:%S))"
    step_start=$SECONDS
}
done_step() {
    echo "    done in $((SECONDS - step_start)) s"
}
fail() {
    echo "interop/run.sh: error: $*" >&2
    exit 1
}

step "go (required: builds SPIRE and the go-spiffe peers)"
command -v go >/dev/null 2>&1 || fail "go not found on PATH; install Go 1.25 or later"
go version
done_step

step "SPIRE 1.13.3 (interop/spire/build.sh)"
interop/spire/build.sh
done_step

step "py-spiffe 0.3.2"
command -v python3 >/dev/null 2>&1 || fail "python3 not found on PATH"
have_spiffe() {
    python3 - <<'PY' 2>/dev/null
import importlib.metadata, sys
sys.exit(0 if importlib.metadata.version("spiffe") == "0.3.2" else 1)
PY
}
if have_spiffe; then
    echo "spiffe 0.3.2 already installed"
else
    python3 -m pip install --quiet "spiffe==0.3.2" || fail "python3 -m pip install spiffe==0.3.2 failed"
    have_spiffe || fail "spiffe 0.3.2 still not importable after pip install"
    echo "installed spiffe 0.3.2"
fi
done_step

step "py-spiffe against zt agent (cargo test -p zt-cli --test python_interop -- --ignored)"
ZT_PYTHON=python3 cargo test -p zt-cli --test python_interop -- --ignored
done_step

step "the http example (run against SPIRE by spire_zt)"
cargo build -p zt-examples --example http
done_step

step "cargo test -p zt-interop -- --ignored"
# The binaries were just checked; the harness must not start a second build.
ZT_SPIRE_NO_BUILD=1 cargo test -p zt-interop -- --ignored "$@"
done_step

echo "interop: all steps passed in $((SECONDS - total_start)) s"
