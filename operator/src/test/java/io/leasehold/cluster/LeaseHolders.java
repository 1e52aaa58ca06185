package io.leasehold.cluster;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.Watch;
import io.fabric8.kubernetes.client.Watcher;
import io.fabric8.kubernetes.client.WatcherException;
import java.util.ArrayList;
import java.util.List;

/**
 * Every holder a lock Lease shows, in order, as the API server's watch reports its versions ("" for
 * free): what the lock was, not what a test happened to look at.
 */
public final class LeaseHolders implements AutoCloseable {

  private final List<String> holders = new ArrayList<>();
  private final Watch watch;

  private LeaseHolders(KubernetesClient client, String namespace, String lease) {
    this.watch =
        client
            .leases()
            .inNamespace(namespace)
            .withName(lease)
            .watch(
                new Watcher<>() {
                  @Override
                  public void eventReceived(Action action, Lease l) {
                    String h =
                        action == Action.DELETED || l.getSpec().getHolderIdentity() == null
                            ? ""
                            : l.getSpec().getHolderIdentity();
                    synchronized (holders) {
                      if (holders.isEmpty() || !holders.get(holders.size() - 1).equals(h)) {
                        holders.add(h);
                      }
                    }
                  }

                  @Override
                  public void onClose(WatcherException cause) {}
                });
  }

  /** Starts watching Lease {@code lease} of {@code namespace}. */
  public static LeaseHolders watch(KubernetesClient client, String namespace, String lease) {
    return new LeaseHolders(client, namespace, lease);
  }

  /** The holders seen so far, consecutive repeats folded. */
  public List<String> seen() {
    synchronized (holders) {
      return List.copyOf(holders);
    }
  }

  /** The holders seen so far, free ("") left out. */
  public List<String> held() {
    return seen().stream().filter(h -> !h.isEmpty()).toList();
  }

  @Override
  public void close() {
    watch.close();
  }
}
