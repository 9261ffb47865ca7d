#!/usr/bin/env bash
# A SPIRE 1.13.3 server and agent for a human, in the foreground:
#
#   interop/spire/dev-agent.sh [spiffe://example.org/dev]
#
# Starts both in a temp dir on 127.0.0.1, registers the given SPIFFE ID for
# every process of the current user (selector unix:uid:<your uid>), prints
# the `export SPIFFE_ENDPOINT_SOCKET=...` line for other shells, and runs
# until Ctrl-C; then stops both and removes the temp dir.
#
# Environment: ZT_DEV_X509_SVID_TTL (default 1h), ZT_DEV_JWT_SVID_TTL (5m),
# ZT_DEV_CA_TTL (24h), ZT_SPIRE_BIN_DIR (default: the cache that
# interop/spire/build.sh fills; it is run when the binaries are missing).
set -euo pipefail

SPIFFE_ID="${1:-spiffe://example.org/dev}"
if [[ "$SPIFFE_ID" != spiffe://*/* ]]; then
    echo "usage: $0 [spiffe://trust-domain/path]" >&2
    exit 2
fi
TRUST_DOMAIN="${SPIFFE_ID#spiffe://}"
TRUST_DOMAIN="${TRUST_DOMAIN%%/*}"

here="$(cd "$(dirname "$0")" && pwd)"
BIN_DIR="${ZT_SPIRE_BIN_DIR:-${ZT_CACHE_DIR:-$HOME/.cache/zt}/spire-1.13.3/bin}"
if [[ ! -x "$BIN_DIR/spire-server" || ! -x "$BIN_DIR/spire-agent" ]]; then
    "$here/build.sh"
fi
SERVER="$BIN_DIR/spire-server"
AGENT="$BIN_DIR/spire-agent"

DIR="$(mktemp -d "${TMPDIR:-/tmp}/zt-dev-spire.XXXXXX")"
server_pid=""
agent_pid=""
cleanup() {
    trap - EXIT INT TERM
    echo
    echo "stopping SPIRE and removing $DIR"
    if [[ -n "$agent_pid" ]]; then kill "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true; fi
    if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo 8081)"
mkdir -p "$DIR/server/data" "$DIR/agent/data"

cat >"$DIR/server/server.conf" <<CONF
server {
    bind_address = "127.0.0.1"
    bind_port = $PORT
    socket_path = "$DIR/server/api.sock"
    trust_domain = "$TRUST_DOMAIN"
    data_dir = "$DIR/server/data"
    log_level = "INFO"
    ca_ttl = "${ZT_DEV_CA_TTL:-24h}"
    default_x509_svid_ttl = "${ZT_DEV_X509_SVID_TTL:-1h}"
    default_jwt_svid_ttl = "${ZT_DEV_JWT_SVID_TTL:-5m}"
}
plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = "$DIR/server/data/datastore.sqlite3"
        }
    }
    KeyManager "disk" {
        plugin_data {
            keys_path = "$DIR/server/data/keys.json"
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
}
CONF

wait_healthy() { # name binary socket pid
    local i
    for ((i = 0; i < 300; i++)); do
        if "$2" healthcheck -socketPath "$3" >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "$4" 2>/dev/null; then
            echo "$1 exited; its log:" >&2
            tail -n 30 "$DIR/$1.log" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "$1 not healthy after 60 s; its log:" >&2
    tail -n 30 "$DIR/$1.log" >&2
    exit 1
}

"$SERVER" run -config "$DIR/server/server.conf" >"$DIR/server.log" 2>&1 &
server_pid=$!
wait_healthy server "$SERVER" "$DIR/server/api.sock" "$server_pid"

NODE_ID="spiffe://$TRUST_DOMAIN/dev/node"
TOKEN="$("$SERVER" token generate -socketPath "$DIR/server/api.sock" -spiffeID "$NODE_ID" | sed -n 's/^Token: //p')"
"$SERVER" bundle show -socketPath "$DIR/server/api.sock" >"$DIR/agent/bootstrap.crt"

cat >"$DIR/agent/agent.conf" <<CONF
agent {
    data_dir = "$DIR/agent/data"
    log_level = "INFO"
    server_address = "127.0.0.1"
    server_port = $PORT
    socket_path = "$DIR/agent/api.sock"
    trust_bundle_path = "$DIR/agent/bootstrap.crt"
    trust_domain = "$TRUST_DOMAIN"
}
plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "disk" {
        plugin_data {
            directory = "$DIR/agent/data"
        }
    }
    WorkloadAttestor "unix" {
        plugin_data {
            discover_workload_path = true
        }
    }
}
CONF

"$AGENT" run -config "$DIR/agent/agent.conf" -joinToken "$TOKEN" >"$DIR/agent.log" 2>&1 &
agent_pid=$!
wait_healthy agent "$AGENT" "$DIR/agent/api.sock" "$agent_pid"

"$SERVER" entry create -socketPath "$DIR/server/api.sock" \
    -parentID "$NODE_ID" -spiffeID "$SPIFFE_ID" -selector "unix:uid:$(id -u)" >/dev/null

cat <<MSG

SPIRE $("$SERVER" --version 2>&1) is running for trust domain $TRUST_DOMAIN (server 127.0.0.1:$PORT).
Every process of uid $(id -u) gets $SPIFFE_ID (within a few seconds of now).
Logs: $DIR/server.log $DIR/agent.log
In another shell:

    export SPIFFE_ENDPOINT_SOCKET=unix://$DIR/agent/api.sock

More entries: $SERVER entry create -socketPath $DIR/server/api.sock -parentID $NODE_ID -spiffeID spiffe://$TRUST_DOMAIN/... -selector unix:path:/abs/path
Ctrl-C stops SPIRE and removes $DIR.
MSG

# Foreground until Ctrl-C or until either process exits.
while kill -0 "$server_pid" 2>/dev/null && kill -0 "$agent_pid" 2>/dev/null; do
    wait -n "$server_pid" "$agent_pid" 2>/dev/null || true
done
echo "a SPIRE process exited; last log lines:" >&2
tail -n 10 "$DIR/server.log" "$DIR/agent.log" >&2
exit 1
