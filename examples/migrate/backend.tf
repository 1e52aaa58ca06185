# Moving a local terraform.tfstate (or any other backend) into leasehold: replace the
# backend block with this one and run
#   terraform init -migrate-state
# (use the address of your leasehold backend: the Service in the cluster, or the
# terraform-backend line that `run --embedded` prints). ?wait=25s keeps a LOCK on a held lock
# waiting in line on the server for up to 25 s, so Ctrl-C still ends Terraform; give the total
# wait with -lock-timeout (terraform apply -lock-timeout=10m), whose retries keep its place.
terraform {
  backend "http" {
    address        = "http://127.0.0.1:8080/v1/states/default/legacy"
    lock_address   = "http://127.0.0.1:8080/v1/states/default/legacy/lock?wait=25s"
    unlock_address = "http://127.0.0.1:8080/v1/states/default/legacy/lock"
  }
}
