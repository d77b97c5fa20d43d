#!/usr/bin/env bash
# A local multi-node Ray cluster for tests: a head and N worker nodes on this machine, all on 127.0.0.1.
#   cluster/local-cluster.sh start [WORKERS] [CPUS_PER_NODE]   # default 1 worker node, 1 CPU per node
#   cluster/local-cluster.sh stop
# Run it from the project's virtualenv: `ray job submit` runs its entrypoint with the head's python.
# Each worker node gets a resource `node_<i>` (and the head `node_head`) so that tests can see
# where trials ran. Token authentication is disabled here only: this cluster is loopback-only.
set -euo pipefail
cmd=${1:-start}
workers=${2:-1}
cpus=${3:-1}
port=${RDSKD_LOCAL_RAY_PORT:-6379}
dash=${RDSKD_LOCAL_DASHBOARD_PORT:-8265}
export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS=0
case "$cmd" in
  start)
    ray start --head --port="$port" --node-ip-address=127.0.0.1 --dashboard-host=127.0.0.1 \
      --dashboard-port="$dash" --num-cpus="$cpus" --resources='{"node_head": 1}' --disable-usage-stats
    for i in $(seq 1 "$workers"); do
      ray start --address="127.0.0.1:$port" --node-ip-address=127.0.0.1 --num-cpus="$cpus" \
        --resources="{\"node_$i\": 1}" --disable-usage-stats
    done
    echo "dashboard and job API: http://127.0.0.1:$dash"
    ;;
  stop)
    ray stop --force
    ;;
  *)
    echo "usage: $0 start [WORKERS] [CPUS_PER_NODE] | stop" >&2
    exit 2
    ;;
esac
