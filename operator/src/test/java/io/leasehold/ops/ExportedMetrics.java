package io.leasehold.ops;

import io.fabric8.kubernetes.api.model.HasMetadata;
import io.javaoperatorsdk.operator.api.monitoring.Metrics;
import io.javaoperatorsdk.operator.monitoring.micrometer.MicrometerMetrics;
import io.javaoperatorsdk.operator.processing.event.ResourceID;
import io.leasehold.api.TerraformState;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.time.Duration;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The metrics a running operator exports, as {@code /metrics} shows them: a registry set up as the
 * {@code run} command sets it up, with every leasehold meter and the Java Operator SDK's
 * reconciliation meters recorded once (meters appear only once something was recorded).
 */
public final class ExportedMetrics {

  private static final Pattern SERIES =
      Pattern.compile("(?m)^([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{[^}]*\\})?\\s");

  private ExportedMetrics() {}

  /** The {@code /metrics} text of a registry on which every meter was recorded. */
  public static String exposition() {
    PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
    LeaseholdMetrics metrics = new LeaseholdMetrics(registry);
    metrics.lockWaited(Duration.ofSeconds(2), true);
    metrics.lockWaited(Duration.ofSeconds(20), false);
    metrics.lockHeld(Duration.ofMinutes(3), "client");
    metrics.lockHeld(Duration.ofMinutes(90), "job");
    metrics.handoff(Duration.ofMillis(300));
    metrics.write(true, "none");
    metrics.write(false, "lineage");
    metrics.stateSize(4096);
    metrics.lockForced("annotation");
    metrics.lockExpiredTakenOver();
    metrics.queueLength("ns/a", 2);
    metrics.requestsInProgress(new RequestDrain());
    metrics.leader(() -> true);
    metrics.replicasAlive(() -> 2);
    metrics.certificateNotAfter(() -> 1_900_000_000L);

    Metrics sdk = MicrometerMetrics.withoutPerResourceMetrics(registry);
    TerraformState state = new TerraformState();
    state.getMetadata().setName("a");
    state.getMetadata().setNamespace("ns");
    // The SDK's meters that need no registered controller: those the alerts and the dashboard use.
    Map<String, Object> metadata = Map.of();
    sdk.failedReconciliation(state, new IllegalStateException("failed"), metadata);
    sdk.finishedReconciliation(state, metadata);
    try {
      sdk.timeControllerExecution(execution(state));
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
    return registry.scrape();
  }

  /**
   * The names of the series in {@link #exposition()}: {@code leasehold_lock_hold_seconds_bucket}.
   */
  public static Set<String> names() {
    return names(exposition());
  }

  public static Set<String> names(String exposition) {
    Set<String> names = new TreeSet<>();
    Matcher m = SERIES.matcher(exposition);
    while (m.find()) {
      names.add(m.group(1));
    }
    return names;
  }

  private static Metrics.ControllerExecution<String> execution(HasMetadata resource) {
    return new Metrics.ControllerExecution<>() {
      @Override
      public String name() {
        return "reconcile";
      }

      @Override
      public String controllerName() {
        return "terraformstatereconciler";
      }

      @Override
      public String successTypeName(String result) {
        return "success";
      }

      @Override
      public ResourceID resourceID() {
        return ResourceID.fromResource(resource);
      }

      @Override
      public Map<String, Object> metadata() {
        return Map.of();
      }

      @Override
      public String execute() {
        return "done";
      }
    };
  }
}
