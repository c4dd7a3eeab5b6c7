#!/usr/bin/env bash
# Stops the server `make up` started: SIGTERM, then SIGKILL if it has not stopped in 30 s.
set -euo pipefail
pid_file=$1
[ -f "$pid_file" ] || { echo "krust is not running (no $pid_file)"; exit 0; }
pid=$(cat "$pid_file")
if kill -0 "$pid" 2>/dev/null; then
  kill -TERM "$pid"
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  echo "krust stopped (pid $pid)"
fi
rm -f "$pid_file"  # normally the server removed it already
