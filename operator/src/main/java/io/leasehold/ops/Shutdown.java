package io.leasehold.ops;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * How a replica stops without dropping requests, in this order:
 *
 * <ol>
 *   <li>{@link #begin()} (on SIGTERM): {@code /readyz} answers 503 from now on, so load balancers
 *       that probe stop choosing this replica; the Service has already dropped it from its
 *       endpoints, or does so now;
 *   <li>{@link #run}: keep serving everything for the delay, while the endpoint change reaches
 *       every node and proxy (requests still on their way are answered normally);
 *   <li>each drain step in turn, within the drain timeout: the backend refuses new requests with
 *       503 (Terraform retries, and reaches another replica), answers what waits, and waits for the
 *       requests in progress;
 *   <li>then the caller closes the backend, the operator and the management server.
 * </ol>
 *
 * The Helm chart orders the grace periods to match: terminationGracePeriodSeconds is longer than
 * the delay plus the drain timeout, so the kubelet's SIGKILL never cuts a drain short.
 */
public final class Shutdown {

  private static final Logger LOG = LoggerFactory.getLogger(Shutdown.class);

  /** One drain step; it gets the time left of the drain timeout. */
  @FunctionalInterface
  public interface Step {
    void run(Duration timeLeft) throws Exception;
  }

  private record Named(String name, Step step) {}

  private final Duration delay;
  private final Duration drainTimeout;
  private final List<Named> steps = new ArrayList<>();
  private volatile boolean begun;

  public Shutdown(Duration delay, Duration drainTimeout) {
    this.delay = delay;
    this.drainTimeout = drainTimeout;
  }

  /** Adds a drain step, run after the delay in the order added. */
  public synchronized Shutdown then(String name, Step step) {
    steps.add(new Named(name, step));
    return this;
  }

  /** The longest the whole sequence takes: the delay and the drain timeout. */
  public Duration budget() {
    return delay.plus(drainTimeout);
  }

  /** Marks the replica as stopping: {@link #readiness} answers not ready from now on. */
  public void begin() {
    if (!begun) {
      begun = true;
      LOG.info(
          "stopping: not ready from now on; serving for {} more, then draining for up to {}",
          human(delay),
          human(drainTimeout));
    }
  }

  public boolean begun() {
    return begun;
  }

  /** {@code readiness}, unless stopping. */
  public Supplier<ManagementServer.Check> readiness(Supplier<ManagementServer.Check> readiness) {
    return () ->
        begun
            ? new ManagementServer.Check(false, "shutting down: draining the backend's requests")
            : readiness.get();
  }

  /** Waits out the delay, then runs the drain steps; never throws. */
  public void run() {
    begin();
    try {
      if (!delay.isZero()) {
        Thread.sleep(delay.toMillis());
      }
      long deadline = System.nanoTime() + drainTimeout.toNanos();
      List<Named> all;
      synchronized (this) {
        all = List.copyOf(steps);
      }
      for (Named s : all) {
        Duration left = Duration.ofNanos(Math.max(0, deadline - System.nanoTime()));
        try {
          s.step().run(left);
        } catch (InterruptedException e) {
          throw e;
        } catch (Exception e) {
          LOG.warn("shutdown step '{}' failed: {}", s.name(), e.getMessage());
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      LOG.warn("shutdown interrupted: closing without waiting for the drain");
    }
  }

  private static String human(Duration d) {
    return d.toMillis() % 1000 == 0 ? d.toSeconds() + "s" : d.toMillis() + "ms";
  }
}
