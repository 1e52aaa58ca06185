#!/bin/sh
# The shell steps every recipe in examples/ci runs: point Terraform's http backend at a state kept
# by leasehold, authenticate with an audience-bound ServiceAccount token, then init and plan or
# apply. The recipes only differ in how they get the token and reach the backend (README.md);
# CiRecipesE2ETest runs this script, as the recipes call it, two pipelines at once on one
# state.
#
# Usage: sh leasehold-terraform.sh plan|apply DIR
#   DIR holds the Terraform code; its backend block is empty: terraform { backend "http" {} }
#
# Environment:
#   LEASEHOLD_URL         the backend's base address, e.g. https://leasehold.leasehold-system.svc:8080
#                         (in the cluster: the Service), or a port-forward, Ingress or Gateway route
#   LEASEHOLD_STATE       the TerraformState, as NAMESPACE/NAME
#   LEASEHOLD_TOKEN_FILE  a file holding a ServiceAccount token issued for the audience leasehold
#                         (a projected token in a pod, or `kubectl create token SA --audience leasehold`)
#   LEASEHOLD_CA_FILE     optional: the CA of the backend's certificate (ca.crt of the ConfigMap
#                         leasehold-ca); unset or empty: the system's CAs (a public certificate)
#
# The lock address waits in line on the server for up to 25 s (?wait=25s, under the usual proxy
# idle timeouts) and Terraform retries with the same lock ID for up to 10 minutes (-lock-timeout),
# keeping its place in line: Terraform cannot cancel a LOCK under way, so a short wait keeps it
# responsive to Ctrl-C and SIGTERM. When Terraform fails showing only an HTTP status (a write
# refused with 409, say), the last lines give the kubectl command that shows leasehold's reason.
set -eu

usage() {
  echo "usage: $0 plan|apply DIR (environment: LEASEHOLD_URL, LEASEHOLD_STATE," \
    "LEASEHOLD_TOKEN_FILE, optional LEASEHOLD_CA_FILE)" >&2
  exit 2
}

[ "$#" -eq 2 ] || usage
action=$1
dir=$2
case "$action" in
  plan | apply) ;;
  *) echo "$0: the action must be plan or apply, not '$action'" >&2 && usage ;;
esac
[ -d "$dir" ] || { echo "$0: no directory '$dir' with the Terraform code" >&2 && exit 2; }
: "${LEASEHOLD_URL:?must be the backend's address, e.g. https://leasehold.leasehold-system.svc:8080}"
: "${LEASEHOLD_STATE:?must name the TerraformState as NAMESPACE/NAME}"
: "${LEASEHOLD_TOKEN_FILE:?must be a file holding a token for the audience leasehold}"
case "$LEASEHOLD_STATE" in
  */*/* | /* | */ | *" "*) echo "$0: LEASEHOLD_STATE must be NAMESPACE/NAME, not '$LEASEHOLD_STATE'" >&2 && exit 2 ;;
  */*) ;;
  *) echo "$0: LEASEHOLD_STATE must be NAMESPACE/NAME, not '$LEASEHOLD_STATE'" >&2 && exit 2 ;;
esac
namespace=${LEASEHOLD_STATE%/*}
name=${LEASEHOLD_STATE#*/}
[ -s "$LEASEHOLD_TOKEN_FILE" ] || { echo "$0: the token file '$LEASEHOLD_TOKEN_FILE' is missing or empty" >&2 && exit 2; }

state="${LEASEHOLD_URL%/}/v1/states/$namespace/$name"
# The token and the CA go in the environment, never in the command line or in .terraform/.
TF_HTTP_USERNAME=terraform
TF_HTTP_PASSWORD=$(cat "$LEASEHOLD_TOKEN_FILE")
export TF_HTTP_USERNAME TF_HTTP_PASSWORD
if [ -n "${LEASEHOLD_CA_FILE:-}" ]; then
  TF_HTTP_CLIENT_CA_CERTIFICATE_PEM=$(cat "$LEASEHOLD_CA_FILE")
  export TF_HTTP_CLIENT_CA_CERTIFICATE_PEM
fi

terraform -chdir="$dir" init -input=false -reconfigure \
  -backend-config="address=$state" \
  -backend-config="lock_address=$state/lock?wait=25s" \
  -backend-config="unlock_address=$state/lock" &&
  if [ "$action" = apply ]; then
    terraform -chdir="$dir" apply -auto-approve -input=false -lock-timeout=10m
  else
    terraform -chdir="$dir" plan -input=false -lock-timeout=10m
  fi ||
  {
    echo "terraform failed; if it shows only an HTTP status, leasehold says why:"
    echo "  kubectl get events -n $namespace --field-selector type=Warning,involvedObject.kind=TerraformState,involvedObject.name=$name"
    exit 1
  }
