#!/usr/bin/env bash
# Starts `krust server` in the background for `make up` and waits until it answers ready.
set -euo pipefail
krust=$1 data_dir=$2 log=$3
pid=$data_dir/server.pid  # written by the server itself

if [ -f "$pid" ] && kill -0 "$(cat "$pid")" 2>/dev/null; then
  echo "krust is already running (pid $(cat "$pid")); \`make down\` stops it."
else
  mkdir -p "$data_dir"
  install -m 0755 "$krust" /usr/local/bin/krust
  nohup /usr/local/bin/krust server --data-dir "$data_dir" >>"$log" 2>&1 &
  echo "krust server started (pid $!), logging to $log"
fi

if ! /usr/local/bin/krust status --data-dir "$data_dir" --wait-ready; then
  echo "krust did not become ready; the last lines of $log:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
# The node agent registers the node; it turns Ready once it has its pod network.
kubeconfig=$data_dir/credentials/client.config
for _ in $(seq 120); do
  kubectl --kubeconfig "$kubeconfig" get nodes --no-headers 2>/dev/null | grep -q ' Ready ' && break
  sleep 1
done
if kubectl --kubeconfig "$kubeconfig" get nodes --no-headers 2>/dev/null | grep -q ' Ready '; then
  kubectl --kubeconfig "$kubeconfig" get nodes
else
  echo "the node is not Ready yet (\`krust status\` and $log tell why):" >&2
  kubectl --kubeconfig "$kubeconfig" get nodes >&2 || true
fi
cat <<MSG

krust is running. Try:
  krust kubectl get nodes,namespaces
  export KUBECONFIG=$data_dir/credentials/client.config; kubectl get all -A
  krust ports          # services, ports and what is listening
  make down            # stop it
MSG
