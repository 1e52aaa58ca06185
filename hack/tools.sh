#!/usr/bin/env bash
# The binaries the tests use that the project builds itself from Go modules (cached by version in
# ${LEASEHOLD_CACHE:-~/.cache/leasehold}/bin; the first build needs the Go module proxy), and
# Prometheus, which it installs:
#
#   hack/tools.sh tofu        OpenTofu's tofu command (hack/tofu/go.mod)
#   hack/tools.sh prometheus  prometheus and promtool: Debian's prometheus package (apt-get, as root
#                             or with sudo), when promtool is not on the PATH
#   hack/tools.sh all         tofu, prometheus and the control plane (hack/cluster.sh build)
#   hack/tools.sh bin         prints the directory to put on the PATH ($LEASEHOLD_CACHE/bin/current)
#
# The tests look for tofu on the PATH, then in that directory; promtool and prometheus on the PATH.
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

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root (or sudo) to run: $*"
  fi
}

# The alert rules' unit tests run promtool, and a test scrapes the operator with prometheus
# (docs/testing.md). Debian's package has both; the service it sets up is not started here.
prometheus() {
  if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    command -v apt-get >/dev/null ||
      die "promtool or prometheus is not on the PATH and there is no apt-get to install Debian's prometheus package: install Prometheus 2.42 or newer (https://prometheus.io/download/) onto the PATH"
    say "installing Debian's prometheus package (promtool, prometheus) with apt-get"
    as_root apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      prometheus >/dev/null
  fi
  promtool --version 2>&1 | head -n 1 >&2 || die "promtool does not run: $(command -v promtool)"
}

case "${1:-}" in
  tofu) tofu ;;
  prometheus) prometheus ;;
  all)
    # One after the other, not "tofu && ...": set -e does not apply on the left of &&, so a
    # failed tofu build would go on as if it had succeeded.
    tofu
    prometheus
    "$HACK/cluster.sh" build
    ;;
  bin) echo "$CACHE/bin/current" ;;
  *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
