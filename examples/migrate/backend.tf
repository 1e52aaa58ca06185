# Moving a local terraform.tfstate (or any other backend) into leasehold: replace the
# backend block with this one and run
#   terraform init -migrate-state
# (use the address of your leasehold backend: the Service in the cluster, or the
# terraform-backend line that `run --embedded` prints).
terraform {
  backend "http" {
    address        = "http://127.0.0.1:8080/v1/states/default/legacy"
    lock_address   = "http://127.0.0.1:8080/v1/states/default/legacy/lock?wait=10m"
    unlock_address = "http://127.0.0.1:8080/v1/states/default/legacy/lock"
  }
}
