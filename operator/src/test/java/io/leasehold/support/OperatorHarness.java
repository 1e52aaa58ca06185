package io.leasehold.support;

import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.Event;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.StateFacts;
import io.leasehold.api.TerraformState;
import io.leasehold.api.TerraformStateStatus;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.operator.LeaseholdOperator;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.stream.Collectors;

/** The embedded API with a running operator, as a test sees them. */
public final class OperatorHarness implements AutoCloseable {

  public static final String NAMESPACE = "default";

  private final EmbeddedKubernetes api;
  private final KubernetesClient client;
  private LeaseholdOperator operator;
  private io.leasehold.ops.LeaseholdMetrics metrics =
      io.leasehold.ops.LeaseholdMetrics.discarding();
  private io.leasehold.backend.HttpBackend backend;
  private LeaseholdOperator.Options options;

  private OperatorHarness(EmbeddedKubernetes api) {
    this.api = api;
    this.client = api.newClient();
  }

  /** Starts the embedded API and an operator on it. */
  public static OperatorHarness start() {
    OperatorHarness harness = new OperatorHarness(EmbeddedKubernetes.start(0));
    harness.startOperator();
    return harness;
  }

  /** Starts the embedded API and an operator that records into {@code metrics}. */
  public static OperatorHarness start(io.leasehold.ops.LeaseholdMetrics metrics) {
    OperatorHarness harness = new OperatorHarness(EmbeddedKubernetes.start(0));
    harness.metrics = metrics;
    harness.startOperator();
    return harness;
  }

  /** Starts the embedded API and an operator with {@code options}. */
  public static OperatorHarness start(LeaseholdOperator.Options options) {
    OperatorHarness harness = new OperatorHarness(EmbeddedKubernetes.start(0));
    harness.options = options;
    harness.metrics = options.metrics();
    harness.startOperator();
    return harness;
  }

  /** The base URL of the backend started with {@link #startBackend}. */
  public String startedBackendUrl() {
    return backend.url();
  }

  public LeaseholdOperator operator() {
    return operator;
  }

  /** Starts the embedded API only. */
  public static OperatorHarness apiOnly() {
    return new OperatorHarness(EmbeddedKubernetes.start(0));
  }

  public void startOperator() {
    operator =
        LeaseholdOperator.start(
            client,
            options != null
                ? options
                : new LeaseholdOperator.Options(
                    Set.of(), Optional.empty(), "test-operator", metrics));
  }

  /** Serves the HTTP backend without authentication, as the embedded mode does. */
  public String startBackend(long maxStateBytes) {
    return startBackend(
        io.leasehold.backend.Access.NONE, io.leasehold.backend.JobPods.NONE, maxStateBytes);
  }

  public String startBackend(
      io.leasehold.backend.Access access, io.leasehold.backend.JobPods pods, long maxStateBytes) {
    return startBackend(access, pods, maxStateBytes, io.leasehold.backend.StateBackend.Audit.NONE);
  }

  public String startBackend(
      io.leasehold.backend.Access access,
      io.leasehold.backend.JobPods pods,
      long maxStateBytes,
      io.leasehold.backend.StateBackend.Audit audit) {
    return startBackend(
        access, pods, maxStateBytes, audit, io.leasehold.backend.HttpBackend.Timeouts.DEFAULT);
  }

  /** Serves the backend with its connection and body timeouts as given. */
  public String startBackend(
      io.leasehold.backend.Access access,
      io.leasehold.backend.JobPods pods,
      long maxStateBytes,
      io.leasehold.backend.StateBackend.Audit audit,
      io.leasehold.backend.HttpBackend.Timeouts timeouts) {
    return startBackend(
        access,
        pods,
        maxStateBytes,
        audit,
        new io.leasehold.backend.HttpBackend.Config(
                "127.0.0.1", 0, java.time.Duration.ofMinutes(10))
            .withTimeouts(timeouts));
  }

  /** Serves the backend as {@code config} says. */
  public String startBackend(
      io.leasehold.backend.Access access,
      io.leasehold.backend.JobPods pods,
      long maxStateBytes,
      io.leasehold.backend.StateBackend.Audit audit,
      io.leasehold.backend.HttpBackend.Config config) {
    backend =
        io.leasehold.cli.Replica.serve(
            operator,
            new io.leasehold.cli.Replica.Backend(access, pods, config, maxStateBytes, audit));
    return backend.url();
  }

  public void stopOperator() {
    if (backend != null) {
      backend.close();
      backend = null;
    }
    if (operator != null) {
      operator.close();
      operator = null;
    }
  }

  public KubernetesClient client() {
    return client;
  }

  public EmbeddedKubernetes api() {
    return api;
  }

  /** The lock Lease of TerraformState {@code name} (workspace default), or null. */
  public io.fabric8.kubernetes.api.model.coordination.v1.Lease lockLease(String name) {
    return client.leases().inNamespace(NAMESPACE).withName("lock-tfstate-default-" + name).get();
  }

  /** Who holds the lock of TerraformState {@code name}: its Lease's holderIdentity, or null. */
  public String lockHolder(String name) {
    var lease = lockLease(name);
    return lease == null || lease.getSpec() == null ? null : lease.getSpec().getHolderIdentity();
  }

  public TerraformState get(String name) {
    return client.resources(TerraformState.class).inNamespace(NAMESPACE).withName(name).get();
  }

  /**
   * The status of TerraformState {@code name}: an empty one while it, or its status, is not there
   * yet, so that a wait reading it retries instead of failing on a null.
   */
  public TerraformStateStatus status(String name) {
    TerraformState s = get(name);
    return s == null || s.getStatus() == null ? new TerraformStateStatus() : s.getStatus();
  }

  /** What {@link #status} shows of the stored state: empty facts while it shows none. */
  public StateFacts facts(String name) {
    StateFacts facts = status(name).getState();
    return facts == null ? new StateFacts() : facts;
  }

  /** The condition {@code type} as "status/reason: message", or "" while status has none. */
  public String condition(String name, String type) {
    List<Condition> conditions = status(name).getConditions();
    return conditions == null
        ? ""
        : conditions.stream()
            .filter(c -> type.equals(c.getType()))
            .map(c -> c.getStatus() + "/" + c.getReason() + ": " + c.getMessage())
            .findFirst()
            .orElse("");
  }

  /** Events recorded on the object named {@code name}, oldest first, as "Reason: message". */
  public List<String> events(String name) {
    // Events are written on a thread of their own, after the status that tells the same news:
    // the ones recorded so far are written before they are read.
    LeaseholdOperator running = operator;
    if (running != null) {
      org.awaitility.Awaitility.await()
          .atMost(java.time.Duration.ofSeconds(30))
          .pollInterval(java.time.Duration.ofMillis(10))
          .until(() -> running.events().idle());
    }
    return client.v1().events().inNamespace(NAMESPACE).list().getItems().stream()
        .filter(e -> name.equals(e.getInvolvedObject().getName()))
        .sorted((a, b) -> a.getMetadata().getName().compareTo(b.getMetadata().getName()))
        .map(OperatorHarness::describe)
        .collect(Collectors.toList());
  }

  private static String describe(Event e) {
    return e.getType() + " " + e.getReason() + ": " + e.getMessage();
  }

  @Override
  public void close() {
    stopOperator();
    client.close();
    api.close();
  }
}
