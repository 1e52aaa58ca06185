package io.leasehold.operator;

import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.leasehold.api.TerraformState;
import io.leasehold.kube.EventRecorder;
import io.leasehold.lock.Holder;
import io.leasehold.lock.HolderPod;
import io.leasehold.lock.LockService;
import io.leasehold.ops.AuditLog;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.state.StateNames;
import java.time.Duration;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Releases the lock of a pod that is gone ({@code spec.lock.releaseVanishedPods}): a lock taken
 * through the backend with a bound ServiceAccount token records its pod, and once that pod is
 * deleted (the API answers 404), replaced by a pod of the same name with another UID, or has ended
 * (phase Succeeded or Failed), the lock is released in one conditional write that checks it is
 * still that lock of that pod. Anything else (the pod runs, is pending or terminating; it cannot be
 * read: no permission, the API fails) keeps the lock and looks again later.
 */
final class VanishedPodLocks {

  /** The Event told when a lock is released because its pod is gone. */
  static final String RELEASED = "LockReleasedPodGone";

  /** The Warning told (once per lock) when the holder pod cannot be read for lack of permission. */
  static final String UNREADABLE = "HolderPodUnreadable";

  private static final Logger LOG = LoggerFactory.getLogger(VanishedPodLocks.class);

  private final KubernetesClient client;
  private final LockService locks;
  private final SharedCaches caches;
  private final EventRecorder events;
  private final LeaseholdMetrics metrics;
  private final Duration recheck;

  /** State to the lock ID whose pod could not be read, told once. */
  private final Map<String, String> warned = new ConcurrentHashMap<>();

  VanishedPodLocks(
      KubernetesClient client,
      LockService locks,
      SharedCaches caches,
      EventRecorder events,
      LeaseholdMetrics metrics,
      Duration recheck) {
    this.client = client;
    this.locks = locks;
    this.caches = caches;
    this.events = events;
    this.metrics = metrics;
    this.recheck = recheck;
  }

  /**
   * Releases the state's lock if the pod that took it is gone. Returns when to look again: while a
   * pod's lock is held (its pod still there, or not known), the pod's end triggers nothing.
   */
  Optional<Duration> check(TerraformState resource, StateNames names) {
    String key = names.namespace() + "/" + names.name();
    if (!resource.getSpec().getLock().getReleaseVanishedPods()) {
      return Optional.empty();
    }
    Optional<Lease> lease = caches.cached(names.namespace(), names.leaseName());
    Optional<Holder> holder = lease.flatMap(Holder::of);
    if (holder.isEmpty() || holder.get().pod().isEmpty()) {
      warned.remove(key);
      return Optional.empty();
    }
    Holder h = holder.get();
    HolderPod pod = h.pod().get();
    Optional<String> gone;
    try {
      gone = gone(pod);
    } catch (KubernetesClientException e) {
      // Not known: the lock is kept. Without the permission to read the pod it never will be.
      if (e.getCode() == 403 && !h.id().equals(warned.put(key, h.id()))) {
        events.warning(
            resource,
            UNREADABLE,
            "lock "
                + h.id()
                + " was taken by pod "
                + pod.describe()
                + ", which leasehold may not read ("
                + e.getMessage()
                + "): the lock is kept until it is unlocked, even once the pod is gone. Grant"
                + " get on pods in namespace "
                + pod.namespace()
                + " to release it then");
      }
      LOG.debug("{}: holder pod {} not read: {}", key, pod, e.getMessage());
      return Optional.of(recheck);
    }
    if (gone.isEmpty()) {
      return Optional.of(recheck);
    }
    LockService.Answer answer = locks.releaseVanishedPod(names, h.id(), pod);
    if (!(answer instanceof LockService.Released released)) {
      // The lock changed hands since it was read: nothing was released.
      LOG.debug("{}: lock {} of pod {} not released: {}", key, h.id(), pod, answer);
      return Optional.empty();
    }
    warned.remove(key);
    String reason = gone.get();
    metrics.lockReleasedPodGone(reason);
    Holder previous = released.previous();
    AuditLog.line("lock-released-pod-gone", names.namespace(), names.name())
        .with("workspace", names.workspace())
        .with("lockId", previous.id())
        .with("holder", previous.summary())
        .with("pod", pod.describe())
        .with("podUid", pod.uid())
        .with("replica", locks.replica())
        .with("reason", reason)
        .log();
    events.warning(
        resource,
        RELEASED,
        "lock "
            + previous.id()
            + " held by "
            + previous.summary()
            + " was released: pod "
            + pod.describe()
            + ", which took it, "
            + switch (reason) {
              case "deleted" -> "is gone";
              case "replaced" -> "is gone (a pod of that name with another UID runs now)";
              default -> "has ended";
            });
    return Optional.empty();
  }

  /**
   * Why {@code pod} is gone ({@code deleted}, {@code replaced}, {@code ended}), or empty while it
   * may still run.
   *
   * @throws KubernetesClientException when the API cannot tell
   */
  private Optional<String> gone(HolderPod pod) {
    Pod found = client.pods().inNamespace(pod.namespace()).withName(pod.name()).get();
    if (found == null) {
      return Optional.of("deleted");
    }
    if (!pod.uid().equals(found.getMetadata().getUid())) {
      return Optional.of("replaced");
    }
    String phase = found.getStatus() == null ? null : found.getStatus().getPhase();
    return "Succeeded".equals(phase) || "Failed".equals(phase)
        ? Optional.of("ended")
        : Optional.empty();
  }
}
