package io.leasehold.api;

/** What happens to the state and its lock when the TerraformState resource is deleted. */
public enum DeletionPolicy {
  /** The state Secrets, history and Lease stay, usable by stock Terraform. */
  Retain,
  /** The state Secrets, history and Lease are removed, but only once the state is unlocked. */
  Delete
}
