package io.leasehold.backend;

import io.fabric8.kubernetes.api.model.OwnerReference;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.client.KubernetesClient;

/** A bound token names its pod; the pod's owner reference names its Job. */
public final class KubernetesJobPods implements JobPods {

  private final KubernetesClient client;

  public KubernetesJobPods(KubernetesClient client) {
    this.client = client;
  }

  @Override
  public boolean isPodOfJob(Requester who, String namespace, String jobUid) {
    if (who.podName().isEmpty()
        || !who.user().startsWith("system:serviceaccount:" + namespace + ":")) {
      return false;
    }
    Pod pod = client.pods().inNamespace(namespace).withName(who.podName().get()).get();
    if (pod == null
        || (who.podUid().isPresent() && !who.podUid().get().equals(pod.getMetadata().getUid()))) {
      return false;
    }
    if (pod.getMetadata().getOwnerReferences() == null) {
      return false;
    }
    for (OwnerReference owner : pod.getMetadata().getOwnerReferences()) {
      if ("Job".equals(owner.getKind()) && jobUid.equals(owner.getUid())) {
        return true;
      }
    }
    return false;
  }
}
