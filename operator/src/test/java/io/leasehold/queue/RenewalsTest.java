package io.leasehold.queue;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static io.leasehold.support.RunnerJobFixtures.create;
import static io.leasehold.support.RunnerJobFixtures.finish;
import static io.leasehold.support.RunnerJobFixtures.get;
import static io.leasehold.support.RunnerJobFixtures.running;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.lock.LeaseLock;
import io.leasehold.state.StateNames;
import io.leasehold.support.OperatorHarness;
import java.time.Duration;
import java.time.Instant;
import java.time.ZonedDateTime;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class RenewalsTest {

  @Test
  @DisplayName(
      "While every status write fails, a running Job's lock is still renewed on schedule and"
          + " never expires")
  void renewalsDoNotDependOnStatusWrites() {
    try (OperatorHarness h = OperatorHarness.start()) {
      JobQueueTest.createState(h, "renewing", 5);
      create(h.client(), "renewing-run", "renewing");
      await().atMost(Duration.ofSeconds(20)).until(() -> running(get(h.client(), "renewing-run")));
      String holder = lease(h).getSpec().getHolderIdentity();

      // From now on the API refuses every status write of this TerraformState.
      h.api()
          .mockServer()
          .expect()
          .put()
          .withPath(
              "/apis/leasehold.io/v1alpha1/namespaces/default/terraformstates/renewing/status")
          .andReturn(500, "{\"kind\":\"Status\",\"code\":500,\"message\":\"injected\"}")
          .always();
      // Something to write: a second Job joins the queue.
      create(h.client(), "renewing-next", "renewing");

      ZonedDateTime before = lease(h).getSpec().getRenewTime();
      // Three lease durations: without renewals the lock would have expired twice over.
      await()
          .during(Duration.ofSeconds(15))
          .atMost(Duration.ofSeconds(20))
          .pollInterval(Duration.ofMillis(200))
          .until(
              () -> {
                Lease l = lease(h);
                return holder.equals(l.getSpec().getHolderIdentity())
                    && !LeaseLock.expired(l, Instant.now());
              });
      assertThat(lease(h).getSpec().getRenewTime()).isAfter(before);
      assertThat(running(get(h.client(), "renewing-next"))).isFalse();
      finish(h.client(), "renewing-run", true);
      await().atMost(Duration.ofSeconds(20)).until(() -> running(get(h.client(), "renewing-next")));
      finish(h.client(), "renewing-next", true);
    }
  }

  private static Lease lease(OperatorHarness h) {
    return h.client()
        .leases()
        .inNamespace(NAMESPACE)
        .withName(new StateNames(NAMESPACE, "renewing", "default").leaseName())
        .get();
  }
}
