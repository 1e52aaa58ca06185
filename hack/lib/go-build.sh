# Shared by hack/cluster.sh and hack/tools.sh: builds the tools of a wrapper Go module (hack/*/go.mod)
# once into a cache keyed by the version it requires and a hash of its go.mod and go.sum.
# shellcheck shell=bash

CACHE="${LEASEHOLD_CACHE:-$HOME/.cache/leasehold}"

say() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# Seconds since the epoch with milliseconds, for the step timings.
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

require_go() {
  command -v go >/dev/null ||
    die "go is not on the PATH: install Go 1.26 or newer (https://go.dev/doc/install; Debian: golang-go is too old) and run again"
  local v
  v="$(go env GOVERSION | sed 's/^go//')"
  case "$v" in
    1.2[6-9]* | 1.[3-9]* | [2-9].*) ;;
    *) die "go $v is too old: the control plane's modules need Go 1.26 or newer" ;;
  esac
}

# The version a wrapper module builds: the one its go.mod requires of MODULE.
module_version() { # DIR MODULE
  awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1/go.mod"
}

# A cache key for a wrapper module: the version plus a hash of its go.mod and go.sum, so that a
# change of either builds again.
cache_key() { # NAME DIR MODULE
  local v h
  v="$(module_version "$2" "$3")"
  [ -n "$v" ] || die "cannot tell which version of $3 $2/go.mod builds"
  h="$(cat "$2/go.mod" "$2/go.sum" | sha256sum | cut -c1-12)"
  printf '%s-%s-%s' "$1" "$v" "$h"
}

# Builds the tools of a wrapper module into the cache (once per key); prints the directory.
# LDFLAGS (optional) are added to the linker flags, for version stamps.
build_module() { # NAME DIR MODULE [LDFLAGS]
  local key out t
  key="$(cache_key "$1" "$2" "$3")-$(printf '%s' "${4:-}" | sha256sum | cut -c1-6)"
  out="$CACHE/bin/$key"
  if [ -f "$out/.complete" ]; then
    say "$1: cached ($out)"
  else
    require_go
    say "$1: building $(module_version "$2" "$3") from the Go module proxy (first time only) ..."
    t="$(now)"
    rm -rf "$out.partial"
    mkdir -p "$out.partial"
    (cd "$2" && GOBIN="$out.partial" GOFLAGS="${GOFLAGS:-} -mod=mod" \
      go install -ldflags="-s -w ${4:-}" tool) >&2 ||
      die "building $1 failed (see the go output above); the Go module proxy must be reachable"
    rm -rf "$out"
    mv "$out.partial" "$out"
    touch "$out/.complete"
    say "$1: built in $(took "$t")"
  fi
  printf '%s\n' "$out"
}

