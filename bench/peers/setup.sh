#!/usr/bin/env bash
# Create (or reuse) bench/.peers-venv: the peers' own virtualenv, so their version pins
# (quixstreams pins confluent-kafka, among others) never clash with the connector's.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${PEERS_VENV:-$HERE/../.peers-venv}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import quixstreams, phonenumbers, fastavro' 2>/dev/null; then
    echo "$VENV/bin/python"
    exit 0
fi
"$PYTHON" -m venv "$VENV" >&2
"$VENV/bin/python" -m pip install -q --upgrade pip >&2
"$VENV/bin/python" -m pip install -q quixstreams phonenumbers fastavro >&2
echo "$VENV/bin/python"
