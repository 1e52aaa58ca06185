package io.leasehold.operator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.ConfigMapBuilder;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.javaoperatorsdk.operator.Operator;
import io.javaoperatorsdk.operator.api.config.LeaderElectionConfigurationBuilder;
import io.javaoperatorsdk.operator.api.reconciler.Context;
import io.javaoperatorsdk.operator.api.reconciler.Reconciler;
import io.javaoperatorsdk.operator.api.reconciler.UpdateControl;
import io.leasehold.embedded.EmbeddedKubernetes;
import java.time.Duration;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * Leadership lost while a reconciliation is still running: when that reconciliation ends and the
 * replica leads again, its resource is reconciled again, like every other.
 */
class LeadershipInFlightTest {

  private static final Leadership.Timing FAST =
      new Leadership.Timing(Duration.ofSeconds(3), Duration.ofSeconds(2), Duration.ofMillis(300));
  private static final String LEASE = "in-flight-leader";

  /** Counts reconciliations; blocks one when armed, until released. */
  static final class Counting implements Reconciler<ConfigMap> {
    final AtomicInteger reconciled = new AtomicInteger();
    final AtomicReference<CountDownLatch> block = new AtomicReference<>();
    final CountDownLatch entered = new CountDownLatch(1);

    @Override
    public UpdateControl<ConfigMap> reconcile(ConfigMap resource, Context<ConfigMap> context)
        throws InterruptedException {
      CountDownLatch latch = block.getAndSet(null);
      if (latch != null) {
        entered.countDown();
        latch.await(30, TimeUnit.SECONDS);
      }
      reconciled.incrementAndGet();
      return UpdateControl.noUpdate();
    }
  }

  @Test
  @DisplayName(
      "When leadership is lost while a reconciliation runs, then once it has ended and the replica"
          + " leads again its resource is reconciled on its next change, not left behind for good")
  void aReconciliationInFlightWhenLeadershipIsLostDoesNotStrandItsResource() throws Exception {
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient client = api.newClient();
        KubernetesClient user = api.newClient()) {
      Leadership leadership = Leadership.elected(client, "default", LEASE, "replica-a", FAST);
      Operator operator =
          new Operator(
              o ->
                  o.withKubernetesClient(client)
                      .withCloseClientOnStop(false)
                      .withUseSSAToPatchPrimaryResource(false)
                      .withLeaderElectionConfiguration(
                          LeaderElectionConfigurationBuilder.aLeaderElectionConfiguration(LEASE)
                              .withLeaseNamespace("default")
                              .withIdentity("replica-a")
                              .withLeaseDuration(FAST.leaseDuration())
                              .withRenewDeadline(FAST.renewDeadline())
                              .withRetryPeriod(FAST.retryPeriod())
                              .withLeaderCallbacks(leadership.callbacks())
                              .withExitOnStopLeading(false)
                              .build()));
      Counting reconciler = new Counting();
      operator.register(reconciler, c -> c.settingNamespaces(java.util.Set.of("default")));
      operator.start();
      ScheduledExecutorService intruder = Executors.newSingleThreadScheduledExecutor();
      try {
        await().atMost(Duration.ofSeconds(30)).until(leadership::leading);
        user.resource(configMap("1")).create();
        await().atMost(Duration.ofSeconds(10)).until(() -> reconciler.reconciled.get() >= 1);

        // A reconciliation starts and is still running when leadership is lost.
        CountDownLatch release = new CountDownLatch(1);
        reconciler.block.set(release);
        user.resource(configMap("2")).update();
        assertThat(reconciler.entered.await(10, TimeUnit.SECONDS)).isTrue();
        intruder.scheduleAtFixedRate(() -> takeLease(user), 0, 200, TimeUnit.MILLISECONDS);
        await().atMost(Duration.ofSeconds(20)).until(() -> !leadership.leading());
        int before = reconciler.reconciled.get();
        release.countDown();
        await().atMost(Duration.ofSeconds(10)).until(() -> reconciler.reconciled.get() > before);

        intruder.shutdownNow();
        assertThat(intruder.awaitTermination(5, TimeUnit.SECONDS)).isTrue();
        await().atMost(Duration.ofSeconds(30)).until(leadership::leading);
        int led = reconciler.reconciled.get();
        user.resource(configMap("3")).update();
        await()
            .atMost(Duration.ofSeconds(10))
            .untilAsserted(
                () ->
                    assertThat(reconciler.reconciled.get())
                        .as("reconciled again after leading again")
                        .isGreaterThan(led));
      } finally {
        intruder.shutdownNow();
        leadership.close();
        operator.stop();
      }
    }
  }

  private static ConfigMap configMap(String version) {
    return new ConfigMapBuilder()
        .withNewMetadata()
        .withName("watched")
        .withNamespace("default")
        .endMetadata()
        .withData(Map.of("version", version))
        .build();
  }

  /** Another candidate takes the leader Lease, as after a partition, and keeps it. */
  private static void takeLease(KubernetesClient user) {
    try {
      user.leases()
          .inNamespace("default")
          .withName(LEASE)
          .edit(
              (Lease l) -> {
                ZonedDateTime now = ZonedDateTime.now(ZoneOffset.UTC);
                l.getSpec().setHolderIdentity("intruder");
                l.getSpec().setAcquireTime(now);
                l.getSpec().setRenewTime(now);
                l.getSpec().setLeaseDurationSeconds(3);
                return l;
              });
    } catch (RuntimeException e) {
      // A conflict with the candidate's write: the next tick wins.
    }
  }
}
