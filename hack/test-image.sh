#!/usr/bin/env bash
# Builds leasehold's container image from the Dockerfile, checks the server jar in it (none of the
# entries server/forbidden-entries.txt lists: no embedded API, mock server or test library), runs
# it the way the Helm chart runs it against a real control plane (hack/cluster.sh) and checks it
# from outside the container. The last line it prints is `image ok: NAME SIZE`.
#
#   hack/test-image.sh [IMAGE]        IMAGE defaults to leasehold/leasehold:<chart appVersion>
#
# It installs what it lacks (docker.io, debootstrap, curl: apt-get, as root) and starts dockerd
# when no engine answers (and stops it again at the end). The control plane's binaries are built
# once from Go modules by hack/cluster.sh (cached). The Dockerfile's base images are public
# ones; when they cannot be pulled (no registry reachable), the script makes them from Debian
# packages with debootstrap instead, once (they are kept in the engine as leasehold-local/*):
#   leasehold-local/jdk:17      Debian's OpenJDK 17 with jmods, for the jlink stage
#   leasehold-local/base:12     glibc, libstdc++, zlib, CA certificates, user 65532; no shell
# LEASEHOLD_IMAGE_BASE=local|public forces one or the other (default: public when pullable).
#
# Exit status: 0 checked, 1 a check failed, 3 no docker engine can be started on this machine.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

APP_VERSION="$(awk '/^appVersion:/ {gsub(/["\047]/, "", $2); print $2}' charts/leasehold/Chart.yaml)"
IMAGE="${1:-leasehold/leasehold:${APP_VERSION}}"
PUBLIC_JDK="eclipse-temurin:17-jdk"
PUBLIC_BASE="gcr.io/distroless/cc-debian12:nonroot"
LOCAL_JDK="leasehold-local/jdk:17"
LOCAL_BASE="leasehold-local/base:12"
SUITE="bookworm"
# terminationGracePeriodSeconds of the chart's pods.
GRACE_SECONDS=30

WORK="$(mktemp -d "${TMPDIR:-/tmp}/leasehold-image.XXXXXX")"
CONTAINER="leasehold-image-test-$$"
DOCKERD_PID=""
CLUSTER="$WORK/cluster"
# Where the image keeps the server jar (Dockerfile).
IMAGE_JAR="/opt/leasehold/leasehold-server.jar"

step() { printf '\n==> %s\n' "$*"; }
fail() {
  echo "FAILED: $*" >&2
  if docker inspect "$CONTAINER" >/dev/null 2>&1; then
    echo "--- container log (last 40 lines) ---" >&2
    docker logs --tail 40 "$CONTAINER" >&2 || true
  fi
  exit 1
}

cleanup() {
  set +e
  docker rm -f "$CONTAINER" >/dev/null 2>&1
  if [ -f "$CLUSTER/run/env" ]; then
    hack/cluster.sh down "$CLUSTER" >/dev/null 2>&1
  fi
  if [ -n "$DOCKERD_PID" ]; then
    kill "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 1 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2
    return 1
  fi
}

APT_UPDATED=""
apt_install() {
  command -v apt-get >/dev/null || { echo "cannot install $*: no apt-get here" >&2; return 1; }
  if [ -z "$APT_UPDATED" ]; then
    as_root apt-get update -qq >/dev/null
    APT_UPDATED=yes
  fi
  echo "installing $* (apt-get)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------------------------------------
step "docker engine"
command -v curl >/dev/null || apt_install curl ca-certificates
if ! command -v docker >/dev/null || ! command -v dockerd >/dev/null; then
  if ! docker info >/dev/null 2>&1; then
    apt_install docker.io || { echo "no docker engine: docker.io cannot be installed" >&2; exit 3; }
  fi
fi
if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd (log: $WORK/dockerd.log)"
  # Started here, not through as_root: a function run in the background is a subshell, and $!
  # would name it rather than dockerd, which the clean-up would then leave running.
  if [ "$(id -u)" -eq 0 ]; then
    dockerd >"$WORK/dockerd.log" 2>&1 &
  elif command -v sudo >/dev/null; then
    sudo dockerd >"$WORK/dockerd.log" 2>&1 &
  else
    echo "no docker engine: starting dockerd needs root" >&2
    exit 3
  fi
  DOCKERD_PID=$!
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
      tail -20 "$WORK/dockerd.log" >&2
      DOCKERD_PID=""
      echo "no docker engine: dockerd exited at start (log above)" >&2
      exit 3
    fi
    sleep 1
  done
  docker info >/dev/null 2>&1 || { tail -20 "$WORK/dockerd.log" >&2; echo "no docker engine: dockerd did not answer within 60 s" >&2; exit 3; }
fi
docker info --format 'engine {{.ServerVersion}}, storage {{.Driver}}, cgroup v{{.CgroupVersion}}'

# ---------------------------------------------------------------------------------------------
step "server jar"
# The image runs the server jar: the operator without the embedded API (see server/pom.xml).
JAR="server/target/leasehold-server.jar"
FORBIDDEN="server/forbidden-entries.txt"
REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
if [ ! -f "$JAR" ] \
  || [ -n "$(find operator/src operator/pom.xml server/pom.xml pom.xml -newer "$JAR" -type f -print -quit)" ] \
  || [[ "$(java -jar "$JAR" --version 2>/dev/null)" != *"commit $REVISION"* ]]; then
  echo "building $JAR (mvn -B -q -DskipTests package)"
  mvn -B -q -DskipTests package
else
  echo "$JAR is up to date"
fi
JAR_VERSION="$(java -jar "$JAR" --version)"
echo "$JAR_VERSION"

# ---------------------------------------------------------------------------------------------
debian_mirror() {
  local uri=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    uri="$(awk '/^URIs:/ {u=$2} /^Suites:/ && / '"$SUITE"'( |$)/ {print u; exit}' /etc/apt/sources.list.d/debian.sources)"
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri="$(awk '$1 == "deb" && $3 == "'"$SUITE"'" {print $2; exit}' /etc/apt/sources.list)"
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

# Files of installed packages in ROOTFS (no directories, no documentation).
package_files() {
  local rootfs=$1; shift
  local pkg path
  for pkg in "$@"; do
    if dpkg-query --admindir="$rootfs/var/lib/dpkg" -W "$pkg" >/dev/null 2>&1; then
      dpkg-query --admindir="$rootfs/var/lib/dpkg" -L "$pkg"
    fi
  done | sort -u | while read -r path; do
    case "$path" in /usr/share/doc/* | /usr/share/man/* | /usr/share/lintian/* | /usr/share/bug/*) continue ;; esac
    if [ -L "$rootfs$path" ] || [ -f "$rootfs$path" ]; then echo ".$path"; fi
  done
}

make_local_bases() {
  command -v debootstrap >/dev/null || apt_install debootstrap
  local mirror rootfs base
  mirror="$(debian_mirror)"
  rootfs="$WORK/jdk-rootfs"
  base="$WORK/base-rootfs"
  echo "debootstrap $SUITE from $mirror with openjdk-17-jdk-headless, which has the jmods (a minute or two)"
  as_root debootstrap --variant=minbase --include=openjdk-17-jdk-headless,ca-certificates \
    "$SUITE" "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log" >&2; fail "debootstrap"; }
  as_root rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import \
    --change "ENV PATH=/usr/lib/jvm/java-17-openjdk-$(dpkg --print-architecture)/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    - "$LOCAL_JDK" >/dev/null
  echo "made $LOCAL_JDK"

  # The run-time base holds only what a jlink'd Java needs, as distroless does.
  mkdir -p "$base"/usr/bin "$base"/usr/lib "$base"/usr/sbin "$base"/etc "$base"/tmp "$base"/home/nonroot
  for link in bin lib lib32 lib64 libx32 sbin; do
    if [ -L "$rootfs/$link" ]; then
      cp -a "$rootfs/$link" "$base/$link"
      mkdir -p "$base/$(readlink "$rootfs/$link")"
    fi
  done
  # (those of them that are installed)
  package_files "$rootfs" libc6 libgcc-s1 libstdc++6 zlib1g base-files netbase tzdata >"$WORK/base-files.txt"
  tar -C "$rootfs" --no-recursion -cf - -T "$WORK/base-files.txt" | tar -C "$base" --keep-directory-symlink -xf -
  cp -a "$rootfs/etc/ssl" "$base/etc/ssl"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$base/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$base/etc/group"
  chmod 1777 "$base/tmp"
  chown 65532:65532 "$base/home/nonroot"
  [ ! -e "$base/bin/sh" ] || fail "the run-time base must not contain a shell"
  tar -C "$base" -c . | docker import --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' - "$LOCAL_BASE" >/dev/null
  echo "made $LOCAL_BASE"
}

step "base images"
MODE="${LEASEHOLD_IMAGE_BASE:-auto}"
if [ "$MODE" = "auto" ]; then
  MODE=local
  if timeout 120 docker pull -q "$PUBLIC_JDK" >/dev/null 2>&1 && timeout 120 docker pull -q "$PUBLIC_BASE" >/dev/null 2>&1; then
    MODE=public
  else
    echo "the public base images cannot be pulled (no registry reachable): using bases made from Debian packages"
  fi
fi
case "$MODE" in
  public) JDK_IMAGE="$PUBLIC_JDK"; BASE_IMAGE="$PUBLIC_BASE" ;;
  local)
    if docker image inspect "$LOCAL_JDK" >/dev/null 2>&1 && docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
      echo "reusing $LOCAL_JDK and $LOCAL_BASE"
    else
      make_local_bases
    fi
    JDK_IMAGE="$LOCAL_JDK"; BASE_IMAGE="$LOCAL_BASE" ;;
  *) echo "LEASEHOLD_IMAGE_BASE must be local or public, not $MODE" >&2; exit 1 ;;
esac
echo "JDK_IMAGE=$JDK_IMAGE BASE_IMAGE=$BASE_IMAGE"

# ---------------------------------------------------------------------------------------------
step "docker build $IMAGE"
VERSION="$APP_VERSION"
dangling() { docker images -q --filter dangling=true | sort -u; }
DANGLING_BEFORE="$(dangling)"
docker build --pull=false \
  --build-arg JDK_IMAGE="$JDK_IMAGE" --build-arg BASE_IMAGE="$BASE_IMAGE" \
  --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION" \
  -t "$IMAGE" . >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; fail "docker build"; }
grep -E "^runtime modules:" "$WORK/build.log" || true
# The builder leaves the jlink stage behind untagged: remove what this build left, nothing else.
comm -13 <(echo "$DANGLING_BEFORE") <(dangling) | xargs -r docker rmi >/dev/null 2>&1 || true

step "image metadata"
user="$(docker image inspect -f '{{.Config.User}}' "$IMAGE")"
[ "$user" = "65532:65532" ] || fail "image user is '$user', not 65532:65532"
for label in source version revision; do
  value="$(docker image inspect -f "{{index .Config.Labels \"org.opencontainers.image.$label\"}}" "$IMAGE")"
  [ -n "$value" ] || fail "label org.opencontainers.image.$label is missing"
  echo "org.opencontainers.image.$label=$value"
done
[ "$(docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.revision"}}' "$IMAGE")" = "$REVISION" ] \
  || fail "revision label differs from $REVISION"
[ "$(docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.version"}}' "$IMAGE")" \
    = "$(printf '%s' "$JAR_VERSION" | cut -d' ' -f2)" ] \
  || fail "version label differs from the jar's version: $JAR_VERSION"
if docker run --rm --entrypoint /bin/sh "$IMAGE" -c true >/dev/null 2>&1; then
  fail "the image has a shell at /bin/sh"
fi
echo "no shell in the image"
image_version="$(docker run --rm --read-only "$IMAGE" --version 2>/dev/null)"
echo "leasehold --version: $image_version"
[ "$image_version" = "$JAR_VERSION" ] || fail "the image's --version differs from the jar's: $JAR_VERSION"
case "$image_version" in *"commit $REVISION"*) ;; *) fail "--version does not name commit $REVISION" ;; esac

# ---------------------------------------------------------------------------------------------
step "the jar in the image"
# Copied out of the image as it is (docker cp from a container that never starts), and listed.
cid="$(docker create "$IMAGE")"
docker cp "$cid:$IMAGE_JAR" "$WORK/image.jar" >/dev/null || { docker rm "$cid" >/dev/null; fail "the image has no $IMAGE_JAR"; }
docker rm "$cid" >/dev/null
jar tf "$WORK/image.jar" >"$WORK/image-jar.txt" || fail "cannot list $IMAGE_JAR"
grep -qx 'io/leasehold/cli/Main.class' "$WORK/image-jar.txt" || fail "$IMAGE_JAR has no io/leasehold/cli/Main.class"
grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$FORBIDDEN" | sed 's/[[:space:]]*$//' >"$WORK/forbidden.txt"
[ -s "$WORK/forbidden.txt" ] || fail "$FORBIDDEN lists nothing"
# Entries whose name starts with a forbidden prefix (compared as fixed strings).
awk 'NR == FNR { prefix[NR] = $0; n = NR; next }
     { for (i = 1; i <= n; i++) if (index($0, prefix[i]) == 1) { print; break } }' \
  "$WORK/forbidden.txt" "$WORK/image-jar.txt" >"$WORK/found.txt"
if [ -s "$WORK/found.txt" ]; then
  echo "--- entries of $IMAGE_JAR that $FORBIDDEN forbids (first 40 of $(wc -l <"$WORK/found.txt")) ---" >&2
  head -40 "$WORK/found.txt" >&2
  fail "the image's jar carries what only the local jar may (the embedded API, a mock server or a test library)"
fi
echo "$IMAGE_JAR: $(wc -l <"$WORK/image-jar.txt") entries, $(wc -c <"$WORK/image.jar") bytes, none under the $(wc -l <"$WORK/forbidden.txt") prefixes $FORBIDDEN forbids"

for command in "run --embedded" "demo"; do
  code=0
  # shellcheck disable=SC2086 # the command's words
  docker run --rm --read-only "$IMAGE" $command >"$WORK/refused.out" 2>"$WORK/refused.err" || code=$?
  [ "$code" = "2" ] || fail "'$command' in the image exited $code, not 2: $(cat "$WORK/refused.err")"
  grep -q 'needs the local jar' "$WORK/refused.err" || fail "'$command' in the image does not say it needs the local jar: $(cat "$WORK/refused.err")"
  grep -q 'mvn -B -DskipTests package' "$WORK/refused.err" || fail "'$command' in the image does not say how to build the local jar"
  if grep -q -e 'Exception' -e $'^\tat ' "$WORK/refused.err"; then fail "'$command' in the image printed a stack trace"; fi
  [ ! -s "$WORK/refused.out" ] || fail "'$command' in the image printed on stdout: $(cat "$WORK/refused.out")"
  echo "$command: exit 2, $(head -c 100 "$WORK/refused.err")..."
done

# ---------------------------------------------------------------------------------------------
step "a control plane (hack/cluster.sh)"
# The server jar runs against a cluster only: here a real kube-apiserver, etcd, controller-manager,
# scheduler and fake node on loopback, which the container reaches over the host's network.
if ! hack/cluster.sh up "$CLUSTER" >"$WORK/cluster.log" 2>&1; then
  tail -20 "$WORK/cluster.log" >&2
  for log in "$CLUSTER"/logs/*.log; do
    [ -f "$log" ] && { echo "--- $(basename "$log") (last 10 lines) ---"; tail -10 "$log"; } >&2
  done
  fail "hack/cluster.sh up (logs above)"
fi
grep -E 'cluster up in' "$WORK/cluster.log" || true
kc() { kubectl --kubeconfig "$CLUSTER/kubeconfig" "$@"; }
kc apply -f crds/terraformstates.leasehold.io-v1.yml >/dev/null
kc wait --for=condition=Established crd/terraformstates.leasehold.io --timeout=60s >/dev/null
kc create namespace leasehold-system >/dev/null
# The state, and a runner: a ServiceAccount that may read, lock and write it (RBAC on
# terraformstates/state), whose token is its Basic-auth password.
cat >"$WORK/runner.yaml" <<'EOF'
apiVersion: leasehold.io/v1alpha1
kind: TerraformState
metadata:
  name: image-check
  namespace: default
spec: {}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: image-check
  namespace: default
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: image-check
  namespace: default
rules:
  - apiGroups: [leasehold.io]
    resources: [terraformstates/state]
    resourceNames: [image-check]
    verbs: [get, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: image-check
  namespace: default
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: image-check}
subjects:
  - {kind: ServiceAccount, name: image-check, namespace: default}
EOF
kc apply -f "$WORK/runner.yaml" >/dev/null
TOKEN="$(kc create token image-check -n default --audience leasehold --duration 1h)"
# The operator's credentials, in one file its user (65532) can read inside the container.
kc config view --raw --flatten --minify >"$WORK/operator.kubeconfig"
chmod 0644 "$WORK/operator.kubeconfig"

# ---------------------------------------------------------------------------------------------
step "run it as the chart does"
# The chart's pod: user and group 65532, read-only root, all capabilities dropped, no privilege
# escalation, an emptyDir on /tmp, 512Mi memory limit, its environment and its arguments (HTTPS
# with a CA of its own kept in a Secret and published for runners). Free ports instead of 8080 and
# 8081, as the container shares the host's network.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
HTTP_PORT="$(free_port)"
MANAGEMENT_PORT="$(free_port)"
docker run -d --name "$CONTAINER" \
  --network host \
  --user 65532:65532 --read-only --tmpfs /tmp:rw,size=64m,mode=1777 \
  --cap-drop ALL --security-opt no-new-privileges \
  --memory 512m \
  -e POD_NAMESPACE=leasehold-system -e POD_NAME=leasehold-image-check -e HOSTNAME=leasehold-image-check \
  -e LEASEHOLD_LOG_FORMAT=text -e LEASEHOLD_LOG_LEVEL=INFO \
  -e JAVA_TOOL_OPTIONS="-XX:MaxRAMPercentage=75 -XX:+ExitOnOutOfMemoryError" \
  -e KUBECONFIG=/etc/leasehold/kubeconfig \
  -v "$WORK/operator.kubeconfig:/etc/leasehold/kubeconfig:ro" \
  "$IMAGE" run --http-port="$HTTP_PORT" --management-port="$MANAGEMENT_PORT" \
  --leader-election-namespace=leasehold-system --leader-election-lease=leasehold-leader \
  --max-state-bytes=134217728 --max-lock-wait=15m \
  --tls-self-signed=leasehold-tls --tls-dns-name=localhost,127.0.0.1 \
  --tls-publish-ca=leasehold-ca >/dev/null

MANAGEMENT="http://127.0.0.1:$MANAGEMENT_PORT"
BACKEND="https://127.0.0.1:$HTTP_PORT/v1/states/"
echo "backend $BACKEND, management $MANAGEMENT"

http() { curl -sS -o "$WORK/body" -w '%{http_code}' "$@"; }

for probe in healthz readyz; do
  code=""
  for _ in $(seq 1 120); do
    code="$(http "$MANAGEMENT/$probe" 2>/dev/null || true)"
    [ "$code" = "200" ] && break
    [ "$(docker inspect -f '{{.State.Running}}' "$CONTAINER")" = "true" ] || fail "the container stopped at start"
    sleep 1
  done
  [ "$code" = "200" ] || fail "/$probe answered $code: $(cat "$WORK/body" 2>/dev/null)"
  echo "/$probe 200: $(head -c 200 "$WORK/body")"
done

# The CA that runners mount: the one the operator published next to the TerraformState.
for _ in $(seq 1 60); do
  kc get configmap leasehold-ca -n default -o jsonpath='{.data.ca\.crt}' >"$WORK/ca.crt" 2>/dev/null || true
  [ -s "$WORK/ca.crt" ] && break
  sleep 1
done
[ -s "$WORK/ca.crt" ] || fail "the operator published no CA (ConfigMap default/leasehold-ca) within 60 s"
code="$(http --cacert "$WORK/ca.crt" -X LOCK --data-binary '{}' "${BACKEND}default/image-check/lock")"
[ "$code" = "401" ] || fail "a LOCK without credentials answered $code, not 401"
echo "HTTPS with the CA published in ConfigMap default/leasehold-ca; a LOCK without credentials: 401"
# From here on, requests are the runner's.
http() { curl -sS --cacert "$WORK/ca.crt" -u "image-check:$TOKEN" -o "$WORK/body" -w '%{http_code}' "$@"; }

STATE_URL="${BACKEND}default/image-check"
lock_info() {
  printf '{"ID":"%s","Operation":"OperationTypeApply","Info":"","Who":"image-check@test","Version":"1.11.4","Created":"2025-01-01T00:00:00Z","Path":""}' "$1"
}
state_json() {
  printf '{"version":4,"terraform_version":"1.11.4","serial":%s,"lineage":"image-check-lineage","outputs":{"padding":{"value":"%s","type":"string"}},"resources":[],"check_results":null}' "$1" "$2"
}

step "LOCK, state round trip, UNLOCK"
lock_info 11111111-aaaa-bbbb-cccc-000000000001 >"$WORK/lock1.json"
code="$(http -X LOCK --data-binary @"$WORK/lock1.json" -H 'Content-Type: application/json' "$STATE_URL/lock")"
[ "$code" = "200" ] || fail "LOCK answered $code: $(cat "$WORK/body")"
echo "LOCK 200"
lock_info 22222222-aaaa-bbbb-cccc-000000000002 >"$WORK/lock2.json"
code="$(http -X LOCK --data-binary @"$WORK/lock2.json" -H 'Content-Type: application/json' "$STATE_URL/lock")"
[ "$code" = "423" ] || fail "a second LOCK answered $code, not 423"
grep -q 11111111-aaaa-bbbb-cccc-000000000001 "$WORK/body" || fail "the 423 does not name the holder"
echo "a second LOCK 423, naming the holder"
state_json 1 hello >"$WORK/state1.json"
code="$(http -X POST --data-binary @"$WORK/state1.json" -H 'Content-Type: application/json' "$STATE_URL?ID=11111111-aaaa-bbbb-cccc-000000000001")"
[ "$code" = "200" ] || fail "POST state answered $code: $(cat "$WORK/body")"
code="$(http "$STATE_URL")"
[ "$code" = "200" ] || fail "GET state answered $code"
cmp -s "$WORK/body" "$WORK/state1.json" || fail "the state read back differs from the state written"
echo "POST then GET: the same $(wc -c <"$WORK/state1.json") bytes"
code="$(http -X UNLOCK --data-binary @"$WORK/lock1.json" -H 'Content-Type: application/json' "$STATE_URL/lock")"
[ "$code" = "200" ] || fail "UNLOCK answered $code: $(cat "$WORK/body")"
echo "UNLOCK 200"

step "SIGTERM while a request is in flight"
lock_info 33333333-aaaa-bbbb-cccc-000000000003 >"$WORK/lock3.json"
code="$(http -X LOCK --data-binary @"$WORK/lock3.json" -H 'Content-Type: application/json' "$STATE_URL/lock")"
[ "$code" = "200" ] || fail "LOCK answered $code"
# A 3 MB state sent at 1 MB/s: about 3 s on the wire, SIGTERM arrives after one.
state_json 2 "$(head -c 3000000 /dev/zero | tr '\0' x)" >"$WORK/state2.json"
curl -sS --cacert "$WORK/ca.crt" -u "image-check:$TOKEN" -o "$WORK/slow.body" -w '%{http_code}' --limit-rate 1M -X POST \
  --data-binary @"$WORK/state2.json" -H 'Content-Type: application/json' \
  "$STATE_URL?ID=33333333-aaaa-bbbb-cccc-000000000003" >"$WORK/slow.code" 2>"$WORK/slow.err" &
SLOW=$!
sleep 1
started=$(date +%s)
docker stop --time "$GRACE_SECONDS" "$CONTAINER" >/dev/null
stopped=$(date +%s)
wait "$SLOW" || true
elapsed=$((stopped - started))
exit_code="$(docker inspect -f '{{.State.ExitCode}}' "$CONTAINER")"
slow_code="$(cat "$WORK/slow.code")"
echo "in-flight POST answered ${slow_code:-nothing} $(cat "$WORK/slow.err")"
echo "stopped in ${elapsed} s with exit code $exit_code"
[ "$slow_code" = "200" ] || fail "the request in flight at SIGTERM was not finished (HTTP '${slow_code}')"
[ "$exit_code" = "0" ] || fail "the container exited with $exit_code after SIGTERM, not 0"
[ "$elapsed" -lt "$GRACE_SECONDS" ] || fail "stopping took ${elapsed} s, not within the ${GRACE_SECONDS} s grace period"
docker logs "$CONTAINER" >"$WORK/container.log" 2>&1
grep -q 'Picked up JAVA_TOOL_OPTIONS' "$WORK/container.log" || fail "the JVM did not pick up JAVA_TOOL_OPTIONS"

SIZE_BYTES="$(docker image inspect -f '{{.Size}}' "$IMAGE")"
SIZE="$(awk -v b="$SIZE_BYTES" 'BEGIN { printf "%.0fMB", b / 1000000 }')"
echo
echo "image ok: $IMAGE $SIZE"
