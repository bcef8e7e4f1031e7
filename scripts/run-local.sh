#!/usr/bin/env bash
# `make run`: the API (uvicorn) and the web client (Streamlit) together, on this machine.
# Ctrl-C (or either server exiting) stops both.
set -uo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-.venv/bin}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
CLIENT_PORT=${CLIENT_PORT:-8501}
API_URL="http://$HOST:$PORT"
CLIENT_URL="http://$HOST:$CLIENT_PORT"

"$BIN/alembic" upgrade head || exit 1

"$BIN/uvicorn" app.main:app --host "$HOST" --port "$PORT" &
api_pid=$!
# The client reaches the API over HTTP only, like any other client.
TASKS_API_URL="$API_URL" "$BIN/streamlit" run client/app.py \
  --server.headless true --server.address "$HOST" --server.port "$CLIENT_PORT" \
  --browser.gatherUsageStats false --client.showErrorDetails none \
  --client.toolbarMode minimal --server.fileWatcherType none &
client_pid=$!

stop() {
  trap - INT TERM EXIT
  kill "$api_pid" "$client_pid" 2>/dev/null
  wait "$api_pid" "$client_pid" 2>/dev/null
}
trap 'stop; exit 130' INT TERM
trap stop EXIT

# Say where to go once both answer (or give up quietly after a minute; their logs say why).
"$BIN/python" - "$API_URL" "$CLIENT_URL" <<'PY' &
import sys, time, urllib.request
api, client = sys.argv[1:]
deadline = time.monotonic() + 60
pending = [f"{api}/healthz", f"{client}/_stcore/health"]
while pending and time.monotonic() < deadline:
    try:
        urllib.request.urlopen(pending[0], timeout=1).close()
        pending.pop(0)
    except OSError:
        time.sleep(0.2)
if not pending:
    print(
        f"\n  Ready.  Web client: {client}   API: {api}/api/v2 (and /api/v1)   Docs: {api}/docs"
        "\n  Press Ctrl-C to stop both servers.\n",
        flush=True,
    )
PY

echo ""
echo "  Web client: $CLIENT_URL"
echo "  API:        $API_URL/api/v2 (and /api/v1)"
echo "  API docs:   $API_URL/docs"
echo ""

# Whichever server exits first (or Ctrl-C) ends the session; the trap stops the other.
wait -n "$api_pid" "$client_pid"
