package io.leasehold.bench;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.Watch;
import io.fabric8.kubernetes.client.Watcher;
import io.fabric8.kubernetes.client.WatcherException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Who holds a lock Lease, over time, as a watch of the Lease sees every version of it (the test
 * cluster serves Lease watches from etcd, so none is merged away): for stock Terraform and for
 * leasehold alike, {@code spec.holderIdentity} is the holder's lock ID, empty when the lock is
 * free. Gives the time each holder held it and the gaps from one holder's release to the next one's
 * grant.
 */
final class HolderTimeline implements AutoCloseable {

  /** The Lease named {@code holder} ("" for none) from {@code nanos} on. */
  record Change(long nanos, String holder) {}

  /** Lock-hold time summed over holders, and the gaps between them in ms. */
  record Summary(double heldSeconds, List<Double> gapsMs, int holders) {}

  private final List<Change> changes = Collections.synchronizedList(new ArrayList<>());
  private final Watch watch;

  HolderTimeline(KubernetesClient client, String namespace, String lease) {
    this.watch =
        client
            .leases()
            .inNamespace(namespace)
            .withField("metadata.name", lease)
            .watch(
                new Watcher<>() {
                  @Override
                  public void eventReceived(Action action, Lease l) {
                    long now = System.nanoTime();
                    String holder =
                        action == Action.DELETED
                                || l.getSpec() == null
                                || l.getSpec().getHolderIdentity() == null
                            ? ""
                            : l.getSpec().getHolderIdentity();
                    synchronized (changes) {
                      if (changes.isEmpty()
                          || !changes.get(changes.size() - 1).holder().equals(holder)) {
                        changes.add(new Change(now, holder));
                      }
                    }
                  }

                  @Override
                  public void onClose(WatcherException cause) {
                    if (cause != null) {
                      System.out.println("note: the Lease watch of " + lease + " ended: " + cause);
                    }
                  }
                });
  }

  /** Holders from {@code startNanos} on (the state before it counts as its first version). */
  Summary since(long startNanos) {
    List<Change> list;
    synchronized (changes) {
      list = new ArrayList<>(changes);
    }
    return summarize(list, startNanos);
  }

  /** Holds and gaps of {@code list} (in time order) from {@code startNanos} on. */
  static Summary summarize(List<Change> list, long startNanos) {
    List<Double> gaps = new ArrayList<>();
    double held = 0;
    int holders = 0;
    String holder = "";
    long since = startNanos;
    Long released = null;
    for (Change c : list) {
      long at = Math.max(c.nanos(), startNanos);
      if (!holder.isEmpty()) {
        held += (at - since) / 1e9;
        // A release before the start opens no gap: the gap counts from a release measured.
        released = c.nanos() >= startNanos ? at : null;
      }
      if (!c.holder().isEmpty()) {
        if (c.nanos() >= startNanos) {
          holders++;
          if (released != null) {
            gaps.add((at - released) / 1e6);
          }
        }
        released = null;
      }
      holder = c.holder();
      since = at;
    }
    gaps.sort(Double::compare);
    return new Summary(held, gaps, holders);
  }

  @Override
  public void close() {
    watch.close();
  }
}
