# Another stack reads the quick-start state's outputs through Terraform's own kubernetes
# backend. terraform_remote_state only reads: it takes no lock, so it never waits for or
# blocks a running apply.
variable "kubeconfig" {
  description = "kubeconfig of the cluster (in a pod, use in_cluster_config = true instead)"
  default     = "~/.kube/config"
}

data "terraform_remote_state" "quickstart" {
  backend = "kubernetes"
  config = {
    secret_suffix = "quickstart"
    namespace     = "default"
    config_path   = var.kubeconfig
  }
}

output "greeting" {
  value = data.terraform_remote_state.quickstart.outputs.greeting
}
