package io.leasehold.state;

import io.fabric8.kubernetes.client.KubernetesClient;
import java.time.Duration;
import java.time.Instant;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Settles interrupted writes (see {@link StateWriter}) with no one having to ask twice: a write
 * whose writer is gone is settled at once; one that is not due yet, or whose settling failed (the
 * API still failing), is tried again on a timer until it is settled. What became of it is told as a
 * Warning.
 */
public final class JournalSettler implements AutoCloseable {

  /** Where the outcome of a settled write is told: Events on the TerraformState. */
  public interface Notices {
    void normal(String reason, String message);

    void warning(String reason, String message);
  }

  private static final Logger LOG = LoggerFactory.getLogger(JournalSettler.class);
  private static final Duration RETRY = Duration.ofSeconds(5);

  private final KubernetesClient client;
  private final String by;
  private final Set<String> scheduled = ConcurrentHashMap.newKeySet();

  /** Failures in a row per state, for the back-off and to log a failing streak once. */
  private final java.util.Map<String, Integer> failures = new ConcurrentHashMap<>();

  private final ScheduledExecutorService timer =
      Executors.newSingleThreadScheduledExecutor(
          r -> {
            Thread t = new Thread(r, "leasehold-write-settler");
            t.setDaemon(true);
            return t;
          });

  /**
   * @param by who settles, as the journal records it
   */
  public JournalSettler(KubernetesClient client, String by) {
    this.client = client;
    this.by = by;
  }

  /**
   * Settles the state's interrupted write now if its writer is gone; if it is not due yet or cannot
   * be settled now, it is tried again later. Returns what happened now: empty when there is no
   * interrupted write, PENDING when it is still to be settled.
   */
  public Optional<StateWriter.Outcome> settle(StateNames names, int keep, Notices notices) {
    Optional<StateWriter.Outcome> outcome;
    try {
      outcome = new StateWriter(client, names).settleAbandoned(by, keep);
    } catch (RuntimeException e) {
      if (closed(e)) {
        // The client is closed: this operator or backend is stopping.
        return Optional.empty();
      }
      String key = names.namespace() + "/" + names.name();
      int streak = failures.merge(key, 1, Integer::sum);
      Duration wait = RETRY.multipliedBy(1L << Math.min(streak - 1, 4));
      if (streak == 1) {
        LOG.warn(
            "{}: cannot look for or settle an interrupted write now ({}); trying again, every {}"
                + " s at most",
            key,
            e.getMessage(),
            RETRY.multipliedBy(16).toSeconds());
      }
      later(names, keep, notices, Instant.now().plus(wait));
      return Optional.empty();
    }
    failures.remove(names.namespace() + "/" + names.name());
    if (outcome.isEmpty()) {
      return outcome;
    }
    if (outcome.get().result() == StateWriter.Result.PENDING) {
      Instant at = outcome.get().journal().takeoverAt();
      // Settling failed just now (the API still fails): not again at once.
      later(names, keep, notices, at.isAfter(Instant.now()) ? at : Instant.now().plus(RETRY));
      return outcome;
    }
    notices.warning(StateWriter.eventReason(outcome.get()), StateWriter.describe(outcome.get()));
    return outcome;
  }

  /** Tries the state's interrupted write again at {@code at} (once, however often asked). */
  public void later(StateNames names, int keep, Notices notices, Instant at) {
    String key = names.namespace() + "/" + names.name();
    if (!scheduled.add(key)) {
      return;
    }
    long delay = Math.max(0, Duration.between(Instant.now(), at).toMillis()) + 100;
    timer.schedule(
        () -> {
          scheduled.remove(key);
          settle(names, keep, notices);
        },
        delay,
        TimeUnit.MILLISECONDS);
  }

  private static boolean closed(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t instanceof java.util.concurrent.RejectedExecutionException) {
        return true;
      }
    }
    return false;
  }

  @Override
  public void close() {
    timer.shutdownNow();
  }
}
