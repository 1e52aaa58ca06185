package io.leasehold.kube;

import io.fabric8.kubernetes.client.KubernetesClientException;

/** What an API server's refusal means, told by its status, not by guessing from the message. */
public final class ApiRefusals {

  /** The cause the API server gives for a create in a namespace that is being deleted. */
  public static final String NAMESPACE_TERMINATING = "NamespaceTerminating";

  private ApiRefusals() {}

  /**
   * Whether the API server refused a create because the object's namespace is being deleted
   * (NamespaceLifecycle: 403 with the cause {@value #NAMESPACE_TERMINATING}): nothing new can be
   * created there any more, by anyone.
   */
  public static boolean namespaceTerminating(KubernetesClientException e) {
    return e.getCode() == 403
        && e.getStatus() != null
        && e.getStatus().getDetails() != null
        && e.getStatus().getDetails().getCauses() != null
        && e.getStatus().getDetails().getCauses().stream()
            .anyMatch(c -> NAMESPACE_TERMINATING.equals(c.getReason()));
  }
}
