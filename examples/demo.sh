#!/usr/bin/env bash
# The demo: a local cluster, the operator, the example fleet, ct-fac's agent, and an install of v622
# going to Succeeded. `up` is idempotent; `down` removes everything it started.
#
#   bash examples/demo.sh up      bash examples/demo.sh down
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
STATE=${FLEET_DEMO_STATE:-/var/lib/fleet-lattice-demo}
NS=fleet
CLUSTER="$REPO/tests/e2e/cluster/cluster"  # the launcher's command line

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

venv() {
  if [ ! -x .venv/bin/fleetlattice ]; then
    say "Python environment (.venv)"
    python3 -m venv .venv
    .venv/bin/pip install --quiet --upgrade pip
    .venv/bin/pip install --quiet -e '.[test]'
  fi
}

kubectl() { command kubectl --kubeconfig "$KUBECONFIG" "$@"; }

background() {  # name, command...: start once, remember the pid
  local name=$1; shift
  if [ -f "$STATE/$name.pid" ] && kill -0 "$(cat "$STATE/$name.pid")" 2>/dev/null; then
    echo "$name already running (pid $(cat "$STATE/$name.pid"))"
    return
  fi
  setsid "$@" >"$STATE/$name.log" 2>&1 < /dev/null &
  echo $! >"$STATE/$name.pid"
  echo "$name started, log: $STATE/$name.log"
}

stop() {
  local name=$1
  if [ -f "$STATE/$name.pid" ]; then
    kill -- "-$(cat "$STATE/$name.pid")" 2>/dev/null || true
    rm -f "$STATE/$name.pid"
  fi
}

up() {
  mkdir -p "$STATE"
  venv
  say "Cluster dependencies (Debian packages) and pinned binaries (Go modules, cached)"
  .venv/bin/python "$CLUSTER" install-deps
  .venv/bin/python "$CLUSTER" build
  say "Local Kubernetes cluster"
  .venv/bin/python "$CLUSTER" up
  eval "$(.venv/bin/python "$CLUSTER" env)"   # KUBECONFIG, and PATH with the pinned kubectl
  BIN=$(dirname "$(type -P kubectl)")      # the pinned kubectl (type -P skips our function)
  say "CRDs and the operator"
  kubectl apply --server-side --force-conflicts -f crds/
  kubectl wait --for=condition=Established --timeout=60s -f crds/
  background operator .venv/bin/fleetlattice run --kubeconfig "$KUBECONFIG" --hub-address clusterip \
    --liveness http://127.0.0.1:18080/healthz --metrics-port 19090
  say "The example fleet in namespace $NS"
  kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
  for f in examples/fleethub-*.yaml examples/siloleaf-*.yaml examples/fleetstream-*.yaml; do
    kubectl apply -n "$NS" -f "$f"
  done
  kubectl wait -n "$NS" --for=condition=Ready --timeout=300s fleethub/eose-hub
  kubectl wait -n "$NS" --for=condition=Ready --timeout=300s fleetstream --all
  kubectl wait -n "$NS" --for=jsonpath='{.status.connected}'=true --timeout=300s siloleaf/ct-fac
  say "ct-fac's agent (the only thing in the silo; nobody runs a command there)"
  leaf=$(kubectl get svc -n "$NS" ct-fac-leaf -o jsonpath='{.spec.clusterIP}')
  # The leaf admits only the silo's local NKey (in a pod: env FLEET_NKEY_SEED from Secret siloleaf-ct-fac-local).
  (umask 077; kubectl get secret -n "$NS" siloleaf-ct-fac-local -o jsonpath='{.data.seed}' | base64 -d >"$STATE/ct-fac-local.nk")
  background agent-ct-fac .venv/bin/fleetlattice agent --silo ct-fac --nats "nats://$leaf:4222" \
    --nkey "$STATE/ct-fac-local.nk" --plan builtin --manifests examples/agent/ct-fac --kubeconfig "$KUBECONFIG" --state-dir "$STATE/agent-ct-fac"
  say "Install v622 on ct-fac"
  kubectl apply -n "$NS" -f examples/siloinstall-ct-fac-v622.yaml
  timeout 300 "$BIN/kubectl" --kubeconfig "$KUBECONFIG" get siloinstalls -n "$NS" -w &
  watcher=$!
  kubectl wait -n "$NS" --for=jsonpath='{.status.phase}'=Succeeded --timeout=300s siloinstall/ct-fac-v622
  kill "$watcher" 2>/dev/null || true
  say "Done"
  kubectl get fleet -n "$NS"
  .venv/bin/fleetlattice status -n "$NS" --kubeconfig "$KUBECONFIG"
  cat <<MSG

Try next (KUBECONFIG=$KUBECONFIG, kubectl at $BIN/kubectl):
  kubectl describe siloinstall ct-fac-v622 -n $NS           # the audit trail in status.history
  .venv/bin/fleetlattice install ct-fac --version v623 -n $NS --kubeconfig \$KUBECONFIG --wait
  kubectl get pods -n eose-entry                             # what the agent installed
  curl -s localhost:19090/metrics | grep fleetlattice_       # the operator's metrics
  # The seed's nats commands, as the ct-fac silo (its NKey seed is key "seed" of Secret siloleaf-ct-fac-credentials):
  #   kubectl get secret siloleaf-ct-fac-credentials -n $NS -o jsonpath='{.data.seed}' | base64 -d > ct-fac.nk
  #   nats -s nats://<hub ClusterIP>:4222 --nkey ct-fac.nk pub fleet.state.ct-fac '{"pods":6}'
  #   nats -s ... --nkey ct-fac.nk pub fleet.install.ct-fac.done '{"pods":6,"health":"ok"}'
Tear down: bash examples/demo.sh down
MSG
}

down() {
  stop agent-ct-fac
  stop operator
  if [ -x .venv/bin/python ]; then
    .venv/bin/python "$CLUSTER" down
  fi
  rm -rf "$STATE"
  echo "demo removed"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
