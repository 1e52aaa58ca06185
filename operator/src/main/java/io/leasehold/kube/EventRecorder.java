package io.leasehold.kube;

import io.fabric8.kubernetes.api.model.EventBuilder;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.ObjectReferenceBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Records Kubernetes Events on the objects users look at, so that {@code kubectl describe} and
 * {@code kubectl get events} tell what leasehold did and why. Recording never fails the caller.
 */
public final class EventRecorder implements AutoCloseable {

  public static final String COMPONENT = "leasehold";
  private static final Logger LOG = LoggerFactory.getLogger(EventRecorder.class);
  private static final AtomicLong SEQUENCE = new AtomicLong();

  private static final int BACKLOG = 10_000;
  static final java.time.Duration WARNING_INTERVAL = java.time.Duration.ofSeconds(10);

  private record Sent(long sentNanos, long suppressed) {}

  private final java.util.Map<String, Sent> warnings =
      new java.util.concurrent.ConcurrentHashMap<>();

  private final KubernetesClient client;
  private final String instance;
  // Events are written off the reconcile path, so recording one never delays a lock handoff.
  private final ThreadPoolExecutor writer =
      new ThreadPoolExecutor(
          1,
          1,
          0,
          TimeUnit.MILLISECONDS,
          new LinkedBlockingQueue<>(BACKLOG),
          r -> {
            Thread t = new Thread(r, "leasehold-events");
            t.setDaemon(true);
            return t;
          },
          (r, executor) -> LOG.warn("event backlog full ({}): an Event was dropped", BACKLOG));

  public EventRecorder(KubernetesClient client, String instance) {
    this.client = client;
    this.instance = instance;
  }

  /** Whether every Event recorded so far has been written (or failed): none waits or is sent. */
  public boolean idle() {
    return writer.getQueue().isEmpty() && writer.getActiveCount() == 0;
  }

  /** Writes the Events still waiting (for up to a few seconds), then stops. */
  @Override
  public void close() {
    writer.shutdown();
    try {
      if (!writer.awaitTermination(5, TimeUnit.SECONDS)) {
        LOG.warn("{} Events not written at shutdown", writer.getQueue().size());
        writer.shutdownNow();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  public void normal(HasMetadata object, String reason, String message) {
    record(object, "Normal", reason, message);
  }

  /**
   * Records a Warning, at most one per object and reason every {@link #WARNING_INTERVAL}: a client
   * retrying a refused write must not flood the namespace with Events. The next Warning that goes
   * out says how many were held back.
   */
  public void warning(HasMetadata object, String reason, String message) {
    String key = object.getMetadata().getUid() + "/" + reason;
    long now = System.nanoTime();
    // Held back so far, or -1 when this one is held back too.
    long[] heldBack = {-1};
    warnings.compute(
        key,
        (k, last) -> {
          if (last == null || now - last.sentNanos() >= WARNING_INTERVAL.toNanos()) {
            heldBack[0] = last == null ? 0 : last.suppressed();
            return new Sent(now, 0);
          }
          return new Sent(last.sentNanos(), last.suppressed() + 1);
        });
    if (heldBack[0] >= 0) {
      record(
          object,
          "Warning",
          reason,
          heldBack[0] == 0
              ? message
              : message + " (" + heldBack[0] + " similar Warnings held back)");
    }
    if (warnings.size() > 10_000) {
      warnings.clear();
    }
  }

  private void record(HasMetadata object, String type, String reason, String message) {
    String now = Instant.now().truncatedTo(ChronoUnit.SECONDS).toString();
    String namespace = object.getMetadata().getNamespace();
    // Fixed-width hex keeps names unique and in the order the events were recorded.
    String name =
        String.format(
            "%s.%012x%06x",
            object.getMetadata().getName(),
            System.currentTimeMillis(),
            SEQUENCE.incrementAndGet() & 0xffffff);
    var event =
        new EventBuilder()
            .withNewMetadata()
            .withName(name)
            .withNamespace(namespace)
            .endMetadata()
            .withInvolvedObject(
                new ObjectReferenceBuilder()
                    .withApiVersion(object.getApiVersion())
                    .withKind(object.getKind())
                    .withName(object.getMetadata().getName())
                    .withNamespace(namespace)
                    .withUid(object.getMetadata().getUid())
                    .build())
            .withType(type)
            .withReason(reason)
            // Messages quote clients (a LockInfo's Who): shown without control characters.
            .withMessage(io.leasehold.api.DisplayText.clean(message, 1024))
            .withCount(1)
            .withFirstTimestamp(now)
            .withLastTimestamp(now)
            .withNewSource()
            .withComponent(COMPONENT)
            .endSource()
            .withReportingComponent("leasehold.io/operator")
            .withReportingInstance(instance)
            .build();
    writer.execute(
        () -> {
          try {
            client.v1().events().inNamespace(namespace).resource(event).create();
          } catch (KubernetesClientException e) {
            LOG.warn(
                "could not record event {} on {}/{}: {}",
                reason,
                namespace,
                event.getInvolvedObject().getName(),
                e.getMessage());
          }
        });
  }
}
