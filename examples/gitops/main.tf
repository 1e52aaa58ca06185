# ?wait=25s: a LOCK on a held lock waits in line on the server for up to 25 s (under the usual
# proxy idle timeouts), then Terraform retries with the same lock ID and keeps its place in line.
# The total wait is Terraform's -lock-timeout (cronjob.yaml). Terraform cannot cancel a LOCK under
# way, so a long ?wait= would leave it deaf to Ctrl-C and SIGTERM until the server answers.
terraform {
  backend "http" {
    address        = "https://leasehold.leasehold-system.svc:8080/v1/states/infra/network"
    lock_address   = "https://leasehold.leasehold-system.svc:8080/v1/states/infra/network/lock?wait=25s"
    unlock_address = "https://leasehold.leasehold-system.svc:8080/v1/states/infra/network/lock"
    username       = "network-runner"
  }
}

resource "terraform_data" "network" {
  input = "managed from git"
}
