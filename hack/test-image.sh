#!/usr/bin/env bash
# Builds leasehold's container image from the Dockerfile, runs it the way the Helm chart runs it
# and checks it from outside the container. The last line it prints is `image ok: NAME SIZE`.
#
#   hack/test-image.sh [IMAGE]        IMAGE defaults to leasehold/leasehold:<chart appVersion>
#
# It installs what it lacks (docker.io, debootstrap, curl: apt-get, as root) and starts dockerd
# when no engine answers (and stops it again at the end). The Dockerfile's base images are public
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
  as_root dockerd >"$WORK/dockerd.log" 2>&1 &
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
step "jar"
JAR="operator/target/leasehold.jar"
REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
if [ ! -f "$JAR" ] || [ -n "$(find operator/src pom.xml operator/pom.xml -newer "$JAR" -type f -print -quit)" ] \
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
if docker run --rm --entrypoint /bin/sh "$IMAGE" -c true >/dev/null 2>&1; then
  fail "the image has a shell at /bin/sh"
fi
echo "no shell in the image"
image_version="$(docker run --rm --read-only "$IMAGE" --version 2>/dev/null)"
echo "leasehold --version: $image_version"
[ "$image_version" = "$JAR_VERSION" ] || fail "the image's --version differs from the jar's: $JAR_VERSION"
case "$image_version" in *"commit $REVISION"*) ;; *) fail "--version does not name commit $REVISION" ;; esac

# ---------------------------------------------------------------------------------------------
step "run it as the chart does"
# The chart's pod: user and group 65532, read-only root, all capabilities dropped, no privilege
# escalation, an emptyDir on /tmp, 512Mi memory limit, its environment and its arguments. Without
# a cluster it runs on the embedded API; the embedded mode listens on loopback only, so the
# container shares the host's network to be reachable from outside on 127.0.0.1.
STATE_YAML="$WORK/state.yaml"
cat >"$STATE_YAML" <<'EOF'
apiVersion: leasehold.io/v1alpha1
kind: TerraformState
metadata:
  name: image-check
  namespace: default
spec: {}
EOF
chmod 0644 "$STATE_YAML"
docker run -d --name "$CONTAINER" \
  --network host \
  --user 65532:65532 --read-only --tmpfs /tmp:rw,size=64m,mode=1777 \
  --cap-drop ALL --security-opt no-new-privileges \
  --memory 512m \
  -e POD_NAMESPACE=leasehold-system -e LEASEHOLD_LOG_FORMAT=text -e LEASEHOLD_LOG_LEVEL=INFO \
  -e JAVA_TOOL_OPTIONS="-XX:MaxRAMPercentage=75 -XX:+ExitOnOutOfMemoryError" \
  -v "$STATE_YAML:/etc/leasehold/state.yaml:ro" \
  "$IMAGE" run --embedded -f /etc/leasehold/state.yaml \
  --leader-election-namespace=leasehold-system --max-state-bytes=134217728 --max-lock-wait=15m >/dev/null

BACKEND="" METRICS=""
for _ in $(seq 1 120); do
  docker logs "$CONTAINER" >"$WORK/container.log" 2>/dev/null || true
  BACKEND="$(sed -n 's/^terraform-backend: //p' "$WORK/container.log")"
  METRICS="$(sed -n 's/^metrics: //p' "$WORK/container.log")"
  [ -n "$BACKEND" ] && [ -n "$METRICS" ] && break
  [ "$(docker inspect -f '{{.State.Running}}' "$CONTAINER")" = "true" ] || fail "the container stopped at start"
  sleep 1
done
[ -n "$BACKEND" ] || fail "the container printed no terraform-backend address within 120 s"
MANAGEMENT="${METRICS%/metrics}"
echo "backend $BACKEND, management $MANAGEMENT"

http() { curl -sS -o "$WORK/body" -w '%{http_code}' "$@"; }

for probe in healthz readyz; do
  code=""
  for _ in $(seq 1 60); do
    code="$(http "$MANAGEMENT/$probe" || true)"
    [ "$code" = "200" ] && break
    sleep 1
  done
  [ "$code" = "200" ] || fail "/$probe answered $code: $(cat "$WORK/body" 2>/dev/null)"
  echo "/$probe 200: $(head -c 200 "$WORK/body")"
done

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
curl -sS -o "$WORK/slow.body" -w '%{http_code}' --limit-rate 1M -X POST \
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
