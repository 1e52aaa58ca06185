#!/usr/bin/env bash
# The whole test suite, every tier (README, Tests; docs/testing.md):
#   1. builds (or takes from its cache) tofu and the real control plane from their Go modules;
#   2. mvn -B verify: the unit and embedded tiers (terraform, tofu and kubectl for real);
#   3. starts the control plane (hack/cluster.sh up) and runs the real-cluster tier against it
#      (mvn -B -Preal-cluster verify), then stops it.
# Options: --skip-embedded runs steps 1 and 3 only; LEASEHOLD_CLUSTER_DIR reuses a running cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
embedded=1
case "${1:-}" in
  "") ;;
  --skip-embedded) embedded=0 ;;
  *) echo "hack/test.sh: unknown option ${1} (the only one is --skip-embedded)" >&2; exit 2 ;;
esac

hack/tools.sh all
PATH="$(hack/tools.sh bin):$PATH"
export PATH
if ! command -v terraform >/dev/null; then
  echo "note: terraform is not on the PATH: the end-to-end tests run with tofu instead"
fi

if [ "$embedded" = 1 ]; then
  echo "== unit and embedded tiers (mvn -B verify)"
  mvn -B verify
fi

echo "== real-cluster tier"
if [ -n "${LEASEHOLD_CLUSTER_DIR:-}" ]; then
  dir="$LEASEHOLD_CLUSTER_DIR"
else
  dir="$(mktemp -d /tmp/leasehold-cluster.XXXXXX)"
  # Stopped whatever happens; removed after a pass (its audit log alone can reach 768 MiB), kept
  # for its logs after a failure.
  trap 'rc=$?; hack/cluster.sh down "$dir" >/dev/null 2>&1 || true
    if [ "$rc" = 0 ]; then rm -rf "$dir"; else echo "the control plane logs: $dir/logs" >&2; fi' EXIT
  hack/cluster.sh up "$dir"
fi
mvn -B -Preal-cluster -Dleasehold.cluster.dir="$dir" verify
