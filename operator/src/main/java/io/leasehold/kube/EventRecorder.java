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
  private final java.time.Duration window;
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
    this(client, instance, AGGREGATE_WINDOW);
  }

  /** With {@code window} for {@link #aggregated} Events (tests use a short one). */
  EventRecorder(KubernetesClient client, String instance, java.time.Duration window) {
    this.client = client;
    this.instance = instance;
    this.window = window;
  }

  /** Whether every Event recorded so far has been written (or failed): none waits or is sent. */
  public boolean idle() {
    return writer.getQueue().isEmpty() && writer.getActiveCount() == 0;
  }

  /** Writes the Events still waiting (for up to a few seconds), then stops. */
  @Override
  public void close() {
    windows.shutdownNow();
    // What the open windows gathered is written now, one Event each.
    for (String key : java.util.List.copyOf(windowsOpen.keySet())) {
      Window open = windowsOpen.remove(key);
      if (open != null && !open.held().isEmpty()) {
        record(open.object(), "Normal", open.reason(), gathered(open.held()));
      }
    }
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

  /** How long the Events of one {@link #aggregated} stream are gathered into one. */
  static final java.time.Duration AGGREGATE_WINDOW = java.time.Duration.ofSeconds(10);

  /** An open window of one object and reason: the messages gathered since its first Event. */
  private record Window(HasMetadata object, String reason, java.util.List<String> held) {}

  private final java.util.Map<String, Window> windowsOpen =
      new java.util.concurrent.ConcurrentHashMap<>();

  private final java.util.concurrent.ScheduledExecutorService windows =
      java.util.concurrent.Executors.newSingleThreadScheduledExecutor(
          r -> {
            Thread t = new Thread(r, "leasehold-event-windows");
            t.setDaemon(true);
            return t;
          });

  /**
   * Records a Normal Event that may come often (a queue handing the lock from Job to Job): the
   * first is written at once; those that follow within the window (10 s) are gathered into one
   * Event written when the window closes, which says how many it stands for and lists them, newest
   * first (as far as an Event's message holds). So a busy queue costs one Event write per window
   * rather than one per step.
   */
  public void aggregated(HasMetadata object, String reason, String message) {
    String key = object.getMetadata().getUid() + "/" + reason;
    boolean[] opens = {false};
    windowsOpen.compute(
        key,
        (k, open) -> {
          if (open == null) {
            opens[0] = true;
            return new Window(object, reason, new java.util.ArrayList<>());
          }
          open.held().add(message);
          return new Window(object, reason, open.held());
        });
    if (opens[0]) {
      record(object, "Normal", reason, message);
      closeWindowLater(key);
    }
  }

  private void closeWindowLater(String key) {
    try {
      windows.schedule(() -> closeWindow(key), window.toMillis(), TimeUnit.MILLISECONDS);
    } catch (java.util.concurrent.RejectedExecutionException e) {
      // Stopping: close() writes what is gathered.
    }
  }

  /** Writes what the window gathered, if anything; the next window opens only then. */
  private void closeWindow(String key) {
    Window[] closed = {null};
    windowsOpen.computeIfPresent(
        key,
        (k, open) -> {
          closed[0] = open;
          return open.held().isEmpty()
              ? null
              : new Window(open.object(), open.reason(), new java.util.ArrayList<>());
        });
    if (closed[0] != null && !closed[0].held().isEmpty()) {
      record(closed[0].object(), "Normal", closed[0].reason(), gathered(closed[0].held()));
      closeWindowLater(key);
    }
  }

  /** One message for {@code held}, newest first: the newest whole, then the others. */
  private String gathered(java.util.List<String> held) {
    String newest = held.get(held.size() - 1);
    if (held.size() == 1) {
      return newest;
    }
    StringBuilder text =
        new StringBuilder(newest)
            .append(" (")
            .append(held.size())
            .append(" in ")
            .append(
                window.toMillis() % 1000 == 0
                    ? window.toSeconds() + " s"
                    : window.toMillis() + " ms")
            .append("; before it: ");
    for (int i = held.size() - 2; i >= 0; i--) {
      text.append(held.get(i)).append(i > 0 ? "; " : ")");
    }
    return text.toString();
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
