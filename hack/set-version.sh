#!/usr/bin/env bash
# Sets the project's one version: the POMs' (the source of truth, which `leasehold --version`
# prints) and the chart's version and appVersion (the default image tag). The image's
# org.opencontainers.image.version label is the build argument VERSION, which the Dockerfile
# refuses unless it equals the jar's version. ReleaseVersionTest fails when they disagree.
#
#   hack/set-version.sh 0.2.0            for a release commit
#   hack/set-version.sh 0.3.0-SNAPSHOT   after it
set -euo pipefail
cd "$(dirname "$0")/.."

version="${1:-}"
if ! printf '%s' "$version" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$'; then
  echo "usage: hack/set-version.sh VERSION   (SemVer: 1.2.3 or 1.2.3-SNAPSHOT; got '${version}')" >&2
  exit 2
fi

current="$(sed -n '/<artifactId>leasehold-parent<\/artifactId>/{n;s/.*<version>\(.*\)<\/version>.*/\1/p;q}' pom.xml)"
[ -n "$current" ] || { echo "no <version> after leasehold-parent in pom.xml" >&2; exit 1; }

# The parent POM's own version and every module's <parent> reference to it.
for pom in pom.xml embedded-api/pom.xml operator/pom.xml server/pom.xml; do
  sed -i "/<artifactId>leasehold-parent<\/artifactId>/{n;s|<version>${current//./\\.}</version>|<version>${version}</version>|}" "$pom"
  grep -A1 '<artifactId>leasehold-parent</artifactId>' "$pom" | grep -q "<version>${version}</version>" \
    || { echo "$pom: the leasehold-parent version was not set" >&2; exit 1; }
done
sed -i -E \
  -e "s/^version: .*/version: ${version}/" \
  -e "s/^appVersion: .*/appVersion: \"${version}\"/" \
  charts/leasehold/Chart.yaml
echo "version ${current} -> ${version}: pom.xml, embedded-api/, operator/, server/, charts/leasehold/Chart.yaml"
