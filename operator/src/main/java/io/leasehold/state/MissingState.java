package io.leasehold.state;

import io.fabric8.kubernetes.client.KubernetesClient;
import java.util.Optional;

/**
 * Why an absent state is a fault rather than "no state yet": versions are kept in history but the
 * state was not deleted through the backend, so its Secret was removed by hand. Guessing (serving
 * nothing, or accepting a fresh state) would lose it.
 */
public final class MissingState {

  private MissingState() {}

  /** The fault, when the state Secret is missing but history says there was a state. */
  public static Optional<String> of(KubernetesClient client, StateNames names) {
    var versions = new StateHistory(client, names).list();
    if (versions.isEmpty() || "before delete".equals(versions.get(0).reason())) {
      return Optional.empty();
    }
    StateHistory.Version latest = versions.get(0);
    return Optional.of(
        "state Secret "
            + names.secretName()
            + " is missing but "
            + versions.size()
            + " version(s) are kept in history (the latest: serial "
            + latest.serial()
            + ", id "
            + latest.id()
            + "): it was deleted outside leasehold. Restore a version with POST"
            + " /v1/states/"
            + names.namespace()
            + "/"
            + names.name()
            + "/history/<id>/restore (list them at .../history)");
  }
}
