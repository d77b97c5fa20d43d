#!/usr/bin/env bash
# A local multi-node Ray cluster for tests: a head and N worker nodes on this machine.
#   cluster/local-cluster.sh start [WORKERS] [CPUS_PER_NODE]   # default 1 worker node, 1 CPU per node
#   cluster/local-cluster.sh stop                              # stops this cluster only
#   cluster/local-cluster.sh kill-node I                       # SIGKILL worker node I (fault tests)
#   cluster/local-cluster.sh pids [I]                          # the cluster's (or node I's) processes
#   cluster/local-cluster.sh status
# Several clusters can run side by side: each has its own state folder (Ray's --temp-dir, and per node
# node_<i>.pids and node_<i>.id, its Ray node id; node 0 is the head) and ports. Environment (all optional):
#   RDSKD_LOCAL_RAY_DIR         state folder, at most 40 characters (default /tmp/rdskd-ray-$RDSKD_LOCAL_RAY_PORT)
#   RDSKD_LOCAL_RAY_PORT        GCS port (default 6379)
#   RDSKD_LOCAL_DASHBOARD_PORT  dashboard and job API port (default 8265)
#   RDSKD_LOCAL_PORT_BASE       first of 200 ports per node for Ray's other servers (default 24000)
#   RDSKD_LOCAL_OBJECT_STORE    object store bytes per node (default 200 MB)
# Node i (0 = head) uses BASE+200*i .. +6 (node manager, object manager, dashboard agent http/grpc,
# runtime env agent, metrics, Ray client) and BASE+200*i+100 .. +199 for its workers.
# Run it from the project's virtualenv: `ray job submit` runs its entrypoint with the head's python.
# Each worker node gets a resource `node_<i>` (and the head `node_head`) so that tests can place work.
# The dashboard (job API) and the Ray client server listen on 127.0.0.1. Ray 2.60 on Linux replaces a
# 127.0.0.1 node address with the host's address for multi-node clusters, so its internal gRPC ports
# listen on all interfaces: use this only on a machine that is not reachable from other hosts. Token
# authentication is disabled here (and only here) unless RAY_AUTH_MODE is set.
set -euo pipefail
cmd=${1:-start}
port=${RDSKD_LOCAL_RAY_PORT:-6379}
dash=${RDSKD_LOCAL_DASHBOARD_PORT:-8265}
base=${RDSKD_LOCAL_PORT_BASE:-24000}
store=${RDSKD_LOCAL_OBJECT_STORE:-200000000}
dir=${RDSKD_LOCAL_RAY_DIR:-/tmp/rdskd-ray-$port}
# Each node gets its own Ray temp dir ($dir/n<i>): nodes sharing one would share their runtime-env
# folders, and one node's cleanup would delete a job's working dir under another node's processes.
# Unix socket paths under it must stay below 108 characters.
node_tmp() { echo "$dir/n$1"; }
export RAY_USAGE_STATS_ENABLED=0 RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS=0
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}

die() { echo "local-cluster: $*" >&2; exit 1; }

# PIDs of this cluster's processes: those naming its temp dir or its GCS address, plus descendants
# (dashboard modules, agents and workers do not name either).
cluster_pids() {
  local roots=() pid args
  for pid in $(ps -eo pid=); do
    args=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || continue
    if [[ "$args" == *"$dir/n"[0-9]* || "$args" =~ [:=]$port( |$) ]]; then roots+=("$pid"); fi
  done
  with_descendants "${roots[@]}"
}

with_descendants() {
  local -A keep=()
  local pid ppid changed=1
  for pid in "$@"; do keep[$pid]=1; done
  while ((changed)); do
    changed=0
    while read -r pid ppid; do
      if [[ -n "${keep[$ppid]:-}" && -z "${keep[$pid]:-}" ]]; then keep[$pid]=1; changed=1; fi
    done < <(ps -eo pid=,ppid=)
  done
  for pid in "${!keep[@]}"; do live "$pid" && [[ $pid != "$$" ]] && echo "$pid"; done | sort -n
}

live() {  # running and not a zombie (killed processes that nobody reaps stay as zombies)
  local state
  state=$(awk '{print $3}' 2>/dev/null <"/proc/$1/stat") || return 1
  [[ "$state" != Z ]]
}

node_ports() {  # ray start options for node $1's servers
  local b=$((base + 200 * $1))
  echo "--node-manager-port=$b --object-manager-port=$((b + 1)) --dashboard-agent-listen-port=$((b + 2))" \
       "--dashboard-agent-grpc-port=$((b + 3)) --runtime-env-agent-port=$((b + 4)) --metrics-export-port=$((b + 5))" \
       "--min-worker-port=$((b + 100)) --max-worker-port=$((b + 199))"
}

# Starts one node and records the processes it added in $dir/node_<i>.pids.
start_node() {
  local i=$1; shift
  local before
  before=$(cluster_pids)
  mkdir -p "$(node_tmp "$i")"
  # RAY_ADDRESS reaches every Ray worker of the node: Ray Train's helper actors look the cluster up
  # and, with another Ray instance on the same machine, fail with "multiple active Ray instances".
  # shellcheck disable=SC2046
  RAY_ADDRESS="127.0.0.1:$port" ray start "$@" $(node_ports "$i") --temp-dir="$(node_tmp "$i")" \
    --object-store-memory="$store" --disable-usage-stats \
    --log-style=record >"$dir/node_$i.log" 2>&1 || { cat "$dir/node_$i.log" >&2; die "node $i did not start"; }
  comm -13 <(echo "$before" | sort) <(cluster_pids | sort) >"$dir/node_$i.pids"  # comm wants lexical order
  # The node's Ray node id (its raylet's --node_id), for tests that check where work ran.
  local pid
  for pid in $(cat "$dir/node_$i.pids"); do
    tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline" | sed -n 's/^--node_id=//p'
  done | head -1 >"$dir/node_$i.id"
}

stop_pids() {  # SIGTERM, up to 2 s, then SIGKILL (like `ray stop --force`: raylets and GCS linger on SIGTERM)
  local pids=("$@") n pid
  ((${#pids[@]})) || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for n in $(seq 1 4); do
    for pid in "${pids[@]}"; do live "$pid" && break; done || return 0
    sleep 0.5
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
}

case "$cmd" in
  start)
    workers=${2:-1}
    cpus=${3:-1}
    ((${#dir} <= 40)) || die "RDSKD_LOCAL_RAY_DIR is too long (${#dir} > 40 characters): Ray's socket paths would not fit"
    [[ -z "$(cluster_pids)" ]] || die "a cluster with state folder $dir or GCS port $port is running: stop it first"
    mkdir -p "$dir"
    rm -f "$dir"/node_*.pids "$dir"/node_*.id
    start_node 0 --head --port="$port" --node-ip-address=127.0.0.1 --dashboard-host=127.0.0.1 \
      --dashboard-port="$dash" --ray-client-server-port=$((base + 6)) --num-cpus="$cpus" \
      --resources='{"node_head": 1}'
    for i in $(seq 1 "$workers"); do
      start_node "$i" --address="127.0.0.1:$port" --num-cpus="$cpus" --resources="{\"node_$i\": 1}"
    done
    address=$(cat "$(node_tmp 0)/ray_current_cluster")
    printf 'RAY_ADDRESS=%s\nRAY_DASHBOARD=http://127.0.0.1:%s\n' "$address" "$dash" >"$dir/cluster.env"
    echo "Ray cluster: head + $workers worker nodes, GCS $address, state in $dir"
    echo "dashboard and job API: http://127.0.0.1:$dash"
    ;;
  stop)
    mapfile -t pids < <(cluster_pids)
    stop_pids "${pids[@]}"
    rm -f "$dir"/node_*.pids "$dir/cluster.env"
    echo "stopped ${#pids[@]} processes of the cluster in $dir"
    ;;
  kill-node)
    i=${2:?kill-node needs a worker node number}
    ((i >= 1)) || die "kill-node takes a worker node (1..N), not the head"
    [[ -f "$dir/node_$i.pids" ]] || die "no node $i recorded in $dir"
    # The raylet's descendants include the workers it started after the node came up.
    mapfile -t pids < <(with_descendants $(cat "$dir/node_$i.pids"))
    ((${#pids[@]})) || die "node $i has no live processes"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    rm -f "$dir/node_$i.pids"
    echo "killed node $i: ${#pids[@]} processes"
    ;;
  pids)
    if [[ -n "${2:-}" ]]; then
      [[ -f "$dir/node_$2.pids" ]] || die "no node $2 recorded in $dir"
      with_descendants $(cat "$dir/node_$2.pids")
    else
      cluster_pids
    fi
    ;;
  status)
    RAY_ADDRESS="$(cat "$(node_tmp 0)/ray_current_cluster" 2>/dev/null)" || die "no cluster in $dir"
    export RAY_ADDRESS
    ray status
    ;;
  *)
    echo "usage: $0 start [WORKERS] [CPUS_PER_NODE] | stop | kill-node I | pids [I] | status" >&2
    exit 2
    ;;
esac
