package io.leasehold.cli;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.backend.Access;
import io.leasehold.backend.HttpBackend;
import io.leasehold.backend.JobPods;
import io.leasehold.backend.StateBackend;
import io.leasehold.operator.LeaseholdOperator;

/**
 * One leasehold replica: the operator (informers, lock service, and the reconciler while it leads)
 * and the Terraform HTTP backend it serves over the same caches and lock service. Every replica
 * serves the backend; one at a time reconciles.
 */
public final class Replica implements AutoCloseable {

  /**
   * How a replica serves the backend.
   *
   * @param access authentication and authorisation of backend requests
   * @param jobPods tells a runner Job's pods from other requesters
   */
  public record Backend(
      Access access,
      JobPods jobPods,
      HttpBackend.Config http,
      long maxStateBytes,
      StateBackend.Audit audit) {

    public Backend(Access access, JobPods jobPods, HttpBackend.Config http, long maxStateBytes) {
      this(access, jobPods, http, maxStateBytes, StateBackend.Audit.NONE);
    }
  }

  private final LeaseholdOperator operator;
  private final HttpBackend backend;

  private Replica(LeaseholdOperator operator, HttpBackend backend) {
    this.operator = operator;
    this.backend = backend;
  }

  /** Starts the operator, then serves the backend over its caches; returns once both run. */
  public static Replica start(
      KubernetesClient client, LeaseholdOperator.Options options, Backend settings) {
    LeaseholdOperator operator = LeaseholdOperator.start(client, options);
    try {
      return new Replica(operator, serve(operator, settings));
    } catch (RuntimeException e) {
      operator.close();
      throw e;
    }
  }

  /** Serves the Terraform HTTP backend over {@code operator}'s caches and lock service. */
  public static HttpBackend serve(LeaseholdOperator operator, Backend settings) {
    HttpBackend.Config http = settings.http();
    if (http.namespaces().isEmpty() && !operator.options().namespaces().isEmpty()) {
      // The backend serves only the namespaces the operator watches (and may read).
      http = http.withNamespaces(operator.options().namespaces());
    }
    KubernetesClient client = operator.client();
    return HttpBackend.start(
        operator.locks(),
        operator.caches()::state,
        locks ->
            new StateBackend(
                    client,
                    operator.events(),
                    settings.maxStateBytes(),
                    locks,
                    operator.options().metrics())
                .withAudit(settings.audit())
                .withOwnership(operator.caches()),
        settings.access(),
        settings.jobPods(),
        operator.events(),
        http,
        operator.options().metrics(),
        settings.audit());
  }

  public LeaseholdOperator operator() {
    return operator;
  }

  public HttpBackend backend() {
    return backend;
  }

  /** Base URL of the backend's state addresses. */
  public String url() {
    return backend.url();
  }

  @Override
  public void close() {
    try {
      backend.close();
    } finally {
      operator.close();
    }
  }
}
