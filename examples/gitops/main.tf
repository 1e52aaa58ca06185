terraform {
  backend "http" {
    address        = "https://leasehold.leasehold-system.svc:8080/v1/states/infra/network"
    lock_address   = "https://leasehold.leasehold-system.svc:8080/v1/states/infra/network/lock?wait=10m"
    unlock_address = "https://leasehold.leasehold-system.svc:8080/v1/states/infra/network/lock"
    username       = "network-runner"
  }
}

resource "terraform_data" "network" {
  input = "managed from git"
}
