package io.leasehold.queue;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.api.TerraformState;
import io.leasehold.lock.Holder;
import io.leasehold.lock.LockService;
import io.leasehold.state.StateNames;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.BiFunction;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Renews the locks leasehold holds for running Jobs, on a schedule of its own: every third of the
 * lease's duration, independent of reconciles, status writes and Events, so a failing status patch
 * can never let a running Job's lock expire. A renewal that fails is tried again at the next tick
 * (every second), well inside the lease. Only the leader renews.
 */
public final class Renewals implements AutoCloseable {

  private static final Logger LOG = LoggerFactory.getLogger(Renewals.class);
  static final Duration TICK = Duration.ofSeconds(1);

  private final LockService locks;
  private final Supplier<Stream<Lease>> leases;
  private final BiFunction<String, String, TerraformState> states;
  private final BooleanSupplier leading;
  private final Clock clock;
  private final ScheduledExecutorService scheduler;

  /**
   * @param leases the lock Leases as cached
   * @param states finds a TerraformState by namespace and name (null when there is none)
   * @param leading whether this replica is the leader now
   */
  public Renewals(
      LockService locks,
      Supplier<Stream<Lease>> leases,
      BiFunction<String, String, TerraformState> states,
      BooleanSupplier leading,
      Clock clock) {
    this.locks = locks;
    this.leases = leases;
    this.states = states;
    this.leading = leading;
    this.clock = clock;
    this.scheduler =
        Executors.newSingleThreadScheduledExecutor(
            r -> {
              Thread t = new Thread(r, "leasehold-renewals");
              t.setDaemon(true);
              return t;
            });
  }

  public Renewals start() {
    scheduler.scheduleWithFixedDelay(
        this::renewDue, TICK.toMillis(), TICK.toMillis(), TimeUnit.MILLISECONDS);
    return this;
  }

  /** Renew at a third of the duration: two renewals can fail before the lease lapses. */
  public static Duration interval(int durationSeconds) {
    return Duration.ofMillis(Math.max(1000, durationSeconds * 1000L / 3));
  }

  /** One tick: renews every Job lock that is due. */
  void renewDue() {
    renew(false);
  }

  /**
   * Stops the schedule and renews every Job lock once more, due or not, while this replica still
   * leads: a leader stopping gracefully leaves each running Job a whole lease duration before its
   * lock could expire, whatever the time since its last renewal, for the next leader to take up its
   * renewals.
   */
  public void closeRenewingAll() {
    // Periodic ticks are cancelled; one still running ends first, so it does not race this one.
    scheduler.shutdown();
    try {
      if (!scheduler.awaitTermination(5, TimeUnit.SECONDS)) {
        scheduler.shutdownNow();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return;
    }
    renew(true);
  }

  private void renew(boolean all) {
    if (!leading.getAsBoolean()) {
      return;
    }
    try {
      Instant now = clock.instant();
      leases.get().forEach(lease -> renewIfDue(lease, now, all));
    } catch (RuntimeException e) {
      LOG.warn("renewing runner Job locks failed; retrying in {}: {}", TICK, e.getMessage());
    }
  }

  private void renewIfDue(Lease lease, Instant now, boolean all) {
    var holder = Holder.of(lease, now);
    if (holder.isEmpty() || holder.get().jobUid().isEmpty()) {
      return;
    }
    Map<String, String> labels = lease.getMetadata().getLabels();
    String name = labels == null ? null : labels.get(StateNames.LABEL_SUFFIX);
    String workspace = labels == null ? null : labels.get(StateNames.LABEL_WORKSPACE);
    if (name == null || workspace == null) {
      return;
    }
    TerraformState state = states.apply(lease.getMetadata().getNamespace(), name);
    if (state == null) {
      return;
    }
    // A spec removed where the API did not refuse it: the running Job's lock is renewed as it is.
    Integer current = lease.getSpec().getLeaseDurationSeconds();
    if (state.getSpec() == null && current == null) {
      return;
    }
    int duration =
        state.getSpec() != null ? state.getSpec().getLock().getLeaseDurationSeconds() : current;
    var renewed = lease.getSpec().getRenewTime();
    boolean due =
        all
            || renewed == null
            || !Objects.equals(lease.getSpec().getLeaseDurationSeconds(), duration)
            || !renewed.toInstant().plus(interval(duration)).isAfter(now);
    if (!due) {
      return;
    }
    StateNames names = new StateNames(lease.getMetadata().getNamespace(), name, workspace);
    try {
      if (locks.renew(names, holder.get().id(), duration).isEmpty()) {
        LOG.debug(
            "{}/{}: lock {} changed hands before its renewal",
            names.namespace(),
            name,
            holder.get().id());
      }
    } catch (RuntimeException e) {
      LOG.warn(
          "{}/{}: renewing lock {} failed; retrying in {}: {}",
          names.namespace(),
          name,
          holder.get().id(),
          TICK,
          e.getMessage());
    }
  }

  @Override
  public void close() {
    scheduler.shutdownNow();
  }
}
