terraform {
  backend "http" {
    address        = "http://leasehold.leasehold-system.svc:8080/v1/states/infra/network"
    lock_address   = "http://leasehold.leasehold-system.svc:8080/v1/states/infra/network/lock?wait=10m"
    unlock_address = "http://leasehold.leasehold-system.svc:8080/v1/states/infra/network/lock"
    username       = "network-runner"
  }
}

resource "terraform_data" "network" {
  input = "managed from git"
}
