#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, built from its Go modules (no downloads of release
# binaries or images: only the Go module proxy is needed).
#
#   hack/cluster.sh build              build (once, cached by version) etcd, kube-apiserver,
#                                      kube-controller-manager, kube-scheduler and kwok
#   hack/cluster.sh up DIR             build if needed, start everything, write DIR/kubeconfig
#   hack/cluster.sh down DIR           stop everything started in DIR (DIR is kept for its logs)
#   hack/cluster.sh restart-apiserver DIR [PAUSE_SECONDS]
#                                      stop the API server, wait, start it again (fault injection)
#   hack/cluster.sh status DIR         processes, their memory, readiness
#
# What runs: etcd; kube-apiserver with RBAC, a service-account signing key (TokenRequest and
# TokenReview with audiences), ValidatingAdmissionPolicy and MutatingAdmissionPolicy; the
# kube-controller-manager (Job, garbage collector, namespace, service-account controllers ...);
# kube-scheduler; and kwok, which plays one node "kwok-node-0": its pods become Running and Ready
# without containers, and pods owned by a Job complete (see hack/cluster/kwok-stages.yaml).
#
# Audit log: the API server records every request at the Metadata level (user, verb, resource,
# namespace, name, response code and timestamps; no bodies) in DIR/logs/audit.log, one JSON event
# per line, by the policy in DIR/run/audit-policy.yaml. The RequestReceived stage is left out, so a
# request is one ResponseComplete event (a watch also has a ResponseStarted one, with the same
# auditID). It is rotated at 256 MiB, two older files kept beside it (audit-TIMESTAMP.log). The
# real-control-plane benchmarks count the operator's requests in it.
#
# Environment: LEASEHOLD_CACHE (default ~/.cache/leasehold) holds the binaries; GOFLAGS, GOPROXY
# as for any Go build.
set -euo pipefail

HACK="$(cd "$(dirname "$0")" && pwd)"

# shellcheck source=hack/lib/go-build.sh
. "$HACK/lib/go-build.sh"

build() {
  local t k8s etcd kwok
  t="$(now)"
  local v stamp p
  v="$(module_version "$HACK/cluster/kubernetes" k8s.io/kubernetes)"
  # The version the binaries report (/version, kubectl version), as Kubernetes' own release
  # build stamps it; without it they say v0.0.0-master.
  stamp=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    stamp="$stamp -X $p.gitVersion=$v -X $p.gitMajor=$(echo "$v" | cut -d. -f1 | tr -d v)"
    stamp="$stamp -X $p.gitMinor=$(echo "$v" | cut -d. -f2) -X $p.gitTreeState=clean"
    stamp="$stamp -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  k8s="$(build_module kubernetes "$HACK/cluster/kubernetes" k8s.io/kubernetes "$stamp")"
  etcd="$(build_module etcd "$HACK/cluster/etcd" go.etcd.io/etcd/server/v3)"
  kwok="$(build_module kwok "$HACK/cluster/kwok" sigs.k8s.io/kwok)"
  mkdir -p "$CACHE/bin/current"
  ln -sf "$k8s/kube-apiserver" "$CACHE/bin/current/kube-apiserver"
  ln -sf "$k8s/kube-controller-manager" "$CACHE/bin/current/kube-controller-manager"
  ln -sf "$k8s/kube-scheduler" "$CACHE/bin/current/kube-scheduler"
  # The etcd server module's main package is named after its directory: server.
  ln -sf "$etcd/server" "$CACHE/bin/current/etcd"
  ln -sf "$kwok/kwok" "$CACHE/bin/current/kwok"
  say "build: binaries ready in $(took "$t") ($CACHE/bin/current)"
}

BIN="$CACHE/bin/current"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# A certificate signed by DIR/pki/ca: NAME CN [O] [SAN]
issue() {
  local pki="$DIR/pki" name="$1" cn="$2" org="${3:-}" san="${4:-}" subj
  subj="/CN=$cn"
  [ -z "$org" ] || subj="/O=$org$subj"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -subj "$subj" \
    -out "$pki/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then
      echo "extendedKeyUsage=serverAuth"
      echo "subjectAltName=$san"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$pki/$name.ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$pki/$name.ext"
}

kubeconfig() { # FILE USER CERT-NAME
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: leasehold-test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: "$DIR/pki/ca.crt"
users:
- name: $2
  user:
    client-certificate: "$DIR/pki/$3.crt"
    client-key: "$DIR/pki/$3.key"
contexts:
- name: leasehold-test
  context:
    cluster: leasehold-test
    user: $2
    namespace: default
current-context: leasehold-test
EOF
}

pki() {
  local pki="$DIR/pki"
  mkdir -p "$pki"
  local f complete=1
  for f in ca.crt ca.key apiserver.crt apiserver.key admin.crt admin.key controller-manager.crt \
    controller-manager.key scheduler.crt scheduler.key kwok.crt kwok.key sa.key sa.pub; do
    [ -s "$pki/$f" ] || complete=0
  done
  [ "$complete" = 1 ] && return 0
  # Missing or partly written (an earlier run stopped midway): made again, all of it.
  rm -f "$pki"/*
  command -v openssl >/dev/null || die "openssl is not on the PATH (Debian: apt-get install openssl)"
  openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -subj "/CN=leasehold-test-ca" \
    -days 3650 -sha256 -out "$pki/ca.crt" 2>/dev/null
  issue apiserver kube-apiserver "" "IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1"
  issue admin kubernetes-admin system:masters
  issue controller-manager system:kube-controller-manager
  issue scheduler system:kube-scheduler
  issue kwok kwok-controller system:masters
  # The service-account signing key: TokenRequest signs with it, TokenReview checks with it.
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
}

start() { # NAME COMMAND...
  local name="$1"
  shift
  # Appended: the log of an earlier run in DIR (before a restart of the API server, say) stays.
  printf '=== %s started by hack/cluster.sh\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$DIR/logs/$name.log"
  nohup "$@" >>"$DIR/logs/$name.log" 2>&1 &
  echo $! >"$DIR/run/$name.pid"
}

# Whether the process recorded as NAME runs: the pid is alive, not a zombie, and its command line
# names DIR (every process started here does), so a pid reused by something else after a reboot or
# a kill is not taken for it.
alive() {
  local pid
  [ -f "$DIR/run/$1.pid" ] || return 1
  pid="$(cat "$DIR/run/$1.pid")"
  kill -0 "$pid" 2>/dev/null || return 1
  grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null && return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$DIR"
}

any_alive() {
  local p
  for p in etcd kube-apiserver kube-controller-manager kube-scheduler kwok; do
    alive "$p" && return 0
  done
  return 1
}

# Waits until COMMAND succeeds; fails at once when the process PROC (a name under run/) has ended.
wait_for() { # WHAT PROC SECONDS COMMAND...
  local what="$1" proc="$2" limit="$3" deadline
  shift 3
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$proc" ] && ! alive "$proc"; then
      tail -5 "$DIR/logs/$proc.log" >&2 || true
      die "$proc exited while starting; its log: $DIR/logs/$proc.log"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      die "$what not ready after ${limit} s; logs in $DIR/logs"
    fi
    sleep 0.2
  done
}

start_apiserver() {
  # Leases are watched straight from etcd (no watch cache): a watch resumed from a resource
  # version after an API server restart then still gets every later version of a Lease, which
  # the fault-injection checker relies on; the cache would answer 410 Gone instead.
  start kube-apiserver "$BIN/kube-apiserver" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --tls-cert-file="$DIR/pki/apiserver.crt" --tls-private-key-file="$DIR/pki/apiserver.key" \
    --client-ca-file="$DIR/pki/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$DIR/pki/sa.pub" \
    --service-account-signing-key-file="$DIR/pki/sa.key" \
    --authorization-mode=RBAC \
    --service-cluster-ip-range=10.96.0.0/16 \
    --endpoint-reconciler-type=none \
    --requestheader-client-ca-file="$DIR/pki/ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --watch-cache-sizes=leases.coordination.k8s.io#0 \
    --audit-policy-file="$DIR/run/audit-policy.yaml" --audit-log-path="$DIR/logs/audit.log" \
    --audit-log-format=json --audit-log-mode=blocking \
    --audit-log-maxsize=256 --audit-log-maxbackup=2 --audit-log-compress=false \
    --enable-priority-and-fairness=false \
    --profiling=false \
    --v=1
}

# Every request at the Metadata level: enough to count requests by user, verb and resource.
audit_policy() {
  cat >"$DIR/run/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
EOF
}

api_ready() {
  curl -sf --max-time 5 --cacert "$DIR/pki/ca.crt" --cert "$DIR/pki/admin.crt" --key "$DIR/pki/admin.key" \
    "https://127.0.0.1:$API_PORT/readyz" >/dev/null
}

kc() { kubectl --kubeconfig "$DIR/kubeconfig" "$@"; }

up() {
  local t0 t
  t0="$(now)"
  [ -n "${DIR:-}" ] || die "usage: hack/cluster.sh up DIR"
  command -v kubectl >/dev/null || die "kubectl is not on the PATH (it is used to check the cluster)"
  command -v curl >/dev/null || die "curl is not on the PATH (Debian: apt-get install curl)"
  mkdir -p "$DIR"
  if any_alive; then
    die "a cluster (or part of one) is already running in $DIR (hack/cluster.sh down $DIR first)"
  fi
  t="$(now)"
  build
  say "step build: $(took "$t")"
  mkdir -p "$DIR/logs" "$DIR/run" "$DIR/etcd"
  # A failed start stops what it had started: nothing is left running behind an error.
  trap 'if [ "$?" != 0 ]; then stop_all; say "up failed: stopped what it had started in $DIR (logs in $DIR/logs)"; fi' EXIT
  t="$(now)"
  pki
  say "step certificates and signing key: $(took "$t")"
  ETCD_PORT="$(free_port)"
  ETCD_PEER_PORT="$(free_port)"
  API_PORT="$(free_port)"
  printf 'ETCD_PORT=%s\nETCD_PEER_PORT=%s\nAPI_PORT=%s\n' "$ETCD_PORT" "$ETCD_PEER_PORT" "$API_PORT" \
    >"$DIR/run/env"
  kubeconfig "$DIR/kubeconfig" kubernetes-admin admin
  kubeconfig "$DIR/run/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
  kubeconfig "$DIR/run/scheduler.kubeconfig" system:kube-scheduler scheduler
  kubeconfig "$DIR/run/kwok.kubeconfig" kwok-controller kwok

  t="$(now)"
  start etcd "$BIN/etcd" --name leasehold-test --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "leasehold-test=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --quota-backend-bytes=4294967296 --log-level=warn
  wait_for etcd etcd 60 curl -sf --max-time 5 "http://127.0.0.1:$ETCD_PORT/health"
  say "step etcd: $(took "$t")"

  t="$(now)"
  audit_policy
  start_apiserver
  wait_for kube-apiserver kube-apiserver 120 api_ready
  say "step kube-apiserver: $(took "$t")"

  t="$(now)"
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$DIR/run/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$DIR/run/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$DIR/run/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$(free_port)" \
    --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$DIR/pki/sa.key" --root-ca-file="$DIR/pki/ca.crt" \
    --cluster-signing-cert-file="$DIR/pki/ca.crt" --cluster-signing-key-file="$DIR/pki/ca.key" \
    --controllers='*,-node-ipam-controller,-taint-eviction-controller,-device-taint-eviction-controller,-persistentvolume-attach-detach-controller' \
    --concurrent-gc-syncs=5 --v=1
  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$DIR/run/scheduler.kubeconfig" \
    --authentication-kubeconfig="$DIR/run/scheduler.kubeconfig" \
    --authorization-kubeconfig="$DIR/run/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$(free_port)" --leader-elect=false --v=1
  start kwok "$BIN/kwok" --kubeconfig="$DIR/run/kwok.kubeconfig" \
    --config="$HACK/cluster/kwok-stages.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr=10.244.0.0/16 --node-ip=10.244.0.1 --node-lease-duration-seconds=40 \
    --server-address="127.0.0.1:$(free_port)" --v=WARN
  kc apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: kwok-node-0
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
status:
  allocatable: {cpu: "64", memory: 256Gi, pods: "1000"}
  capacity: {cpu: "64", memory: 256Gi, pods: "1000"}
EOF
  # Ready when the service-account controller made the default ServiceAccount, the fake node is
  # Ready and a pod of a Job runs to completion (scheduler, kwok and Job controller together).
  wait_for "default ServiceAccount" kube-controller-manager 120 kc get serviceaccount default -n default
  wait_for "node kwok-node-0" kwok 120 kc wait --for=condition=Ready node/kwok-node-0 --timeout=1s
  kc delete job leasehold-cluster-check --ignore-not-found --wait=true >/dev/null
  kc create job leasehold-cluster-check --image=busybox -- true >/dev/null
  wait_for "a Job through the Job controller, scheduler and kwok" kube-scheduler 120 \
    kc wait --for=condition=Complete job/leasehold-cluster-check --timeout=1s
  kc delete job leasehold-cluster-check --cascade=foreground --wait=false >/dev/null
  say "step controller-manager, scheduler, fake node, a Job run to completion: $(took "$t")"
  trap - EXIT
  say "cluster up in $(took "$t0"); memory $(memory_mib) MiB RSS"
  echo "kubeconfig: $DIR/kubeconfig"
}

memory_mib() {
  local total=0 p rss
  for p in etcd kube-apiserver kube-controller-manager kube-scheduler kwok; do
    if alive "$p"; then
      rss="$(ps -o rss= -p "$(cat "$DIR/run/$p.pid")" | tr -d ' ')"
      total=$((total + ${rss:-0}))
    fi
  done
  echo $((total / 1024))
}

stop_one() {
  local pid i
  [ -f "$DIR/run/$1.pid" ] || return 0
  pid="$(cat "$DIR/run/$1.pid")"
  if alive "$1"; then
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/run/$1.pid"
}

down() {
  [ -n "${DIR:-}" ] || die "usage: hack/cluster.sh down DIR"
  [ -d "$DIR/run" ] || die "no cluster was started in $DIR"
  stop_all
  say "cluster in $DIR stopped (logs kept in $DIR/logs)"
}

stop_all() {
  local p
  for p in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do stop_one "$p"; done
}

restart_apiserver() {
  [ -f "$DIR/run/env" ] || die "no cluster was started in $DIR"
  # shellcheck disable=SC1091
  . "$DIR/run/env"
  local t pause="${1:-0}"
  [[ "$pause" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "PAUSE_SECONDS must be a number of seconds, not '$pause'"
  t="$(now)"
  stop_one kube-apiserver
  sleep "$pause"
  audit_policy
  start_apiserver
  wait_for kube-apiserver kube-apiserver 120 api_ready
  say "kube-apiserver restarted in $(took "$t")"
}

status() {
  [ -f "$DIR/run/env" ] || die "no cluster was started in $DIR"
  # shellcheck disable=SC1091
  . "$DIR/run/env"
  local p
  for p in etcd kube-apiserver kube-controller-manager kube-scheduler kwok; do
    if alive "$p"; then
      printf '%-24s running, %s MiB\n' "$p" "$(($(ps -o rss= -p "$(cat "$DIR/run/$p.pid")") / 1024))"
    else
      printf '%-24s stopped\n' "$p"
    fi
  done
  if api_ready; then echo "api: ready (https://127.0.0.1:$API_PORT)"; else echo "api: not ready"; fi
}

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
  exit 2
}

cmd="${1:-}"
DIR="${2:-}"
case "$cmd" in
  up | down | restart-apiserver | status) [ -n "$DIR" ] || usage ;;
  build) ;;
  *) usage ;;
esac
if [ -n "$DIR" ]; then
  # Only up creates DIR; the others need the one up made.
  if [ "$cmd" = up ]; then mkdir -p "$DIR"; fi
  [ -d "$DIR" ] || die "no cluster was started in $DIR"
  DIR="$(cd "$DIR" && pwd)"
fi
case "$cmd" in
  build) build ;;
  up) up ;;
  down) down ;;
  restart-apiserver) restart_apiserver "${3:-0}" ;;
  status) status ;;
  *) usage ;;
esac
