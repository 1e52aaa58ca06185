#!/usr/bin/env bash
# The binaries the tests use that the project builds itself from Go modules (cached by version in
# ${LEASEHOLD_CACHE:-~/.cache/leasehold}/bin; the first build needs the Go module proxy):
#
#   hack/tools.sh tofu     OpenTofu's tofu command (hack/tofu/go.mod)
#   hack/tools.sh all      tofu and the control plane (hack/cluster.sh build)
#   hack/tools.sh bin      prints the directory to put on the PATH ($LEASEHOLD_CACHE/bin/current)
#
# The tests look for tofu on the PATH, then in that directory.
set -euo pipefail
HACK="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=hack/lib/go-build.sh
. "$HACK/lib/go-build.sh"

tofu() {
  local dir
  # A release build says so (else "-dev"): the same stamp as OpenTofu's own release build.
  dir="$(build_module tofu "$HACK/tofu" github.com/opentofu/opentofu \
    "-X github.com/opentofu/opentofu/version.dev=no")"
  mkdir -p "$CACHE/bin/current"
  ln -sf "$dir/tofu" "$CACHE/bin/current/tofu"
  local v
  v="$("$CACHE/bin/current/tofu" version 2>/dev/null)" ||
    die "the tofu just built does not run: $CACHE/bin/current/tofu"
  printf '%s\n' "$v" | grep '^OpenTofu v' >&2
}

case "${1:-}" in
  tofu) tofu ;;
  all)
    # One after the other, not "tofu && ...": set -e does not apply on the left of &&, so a
    # failed tofu build would go on as if it had succeeded.
    tofu
    "$HACK/cluster.sh" build
    ;;
  bin) echo "$CACHE/bin/current" ;;
  *) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
