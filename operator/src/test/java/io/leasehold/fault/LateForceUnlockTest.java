package io.leasehold.fault;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.kube.TolerantSerialization;
import io.leasehold.lock.Caller;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.LockService;
import io.leasehold.state.StateNames;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * {@code terraform force-unlock} through the HTTP backend names no lock: it breaks whatever is held
 * when it is decided. Held up past its deadline (its replica stalled, the API unreachable), it must
 * not break a lock taken since, such as a runner Job's that has just started.
 */
class LateForceUnlockTest {

  @Test
  @DisplayName(
      "A force-unlock held up past its deadline while the lock changed hands breaks nothing: the"
          + " new holder keeps the lock; one decided in time breaks the lock as it is")
  void aLateForceUnlockBreaksNothing() throws Exception {
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient admin = api.newClient()) {
      ApiGate gate = new ApiGate("stalled-replica", refused -> {});
      Config config = api.clientConfig();
      config.setImpersonateUsername(EmbeddedKubernetes.OPERATOR_USER);
      try (KubernetesClient stalled =
          new KubernetesClientBuilder()
              .withConfig(config)
              .withKubernetesSerialization(new TolerantSerialization())
              .withHttpClientBuilderConsumer(b -> b.addOrReplaceInterceptor("gate", gate))
              .build()) {
        LockService locks =
            new LockService(
                stalled,
                LockService.LeaseSource.NONE,
                Clock.systemUTC(),
                "stalled-replica",
                new LockService.Settings(Duration.ofSeconds(30)));
        StateNames names = new StateNames("default", "late", "default");
        LockInfo alice =
            new LockInfo("alice-1", "OperationTypeApply", "", "alice@ci", "1.11.4", "", "");
        assertThat(locks.lock(names, alice, Caller.of("alice", "alice"), false, Map.of()))
            .isInstanceOf(LockService.Granted.class);

        // The admin saw alice's lock and asks to break it; the replica stalls before it reads
        // the Lease.
        gate.pause();
        Instant asked = Instant.now();
        Duration deadline = Duration.ofSeconds(2);
        CompletableFuture<LockService.Answer> force =
            CompletableFuture.supplyAsync(
                () -> locks.forceUnlock(names, Optional.empty(), asked.plus(deadline)));
        // Meanwhile alice's lock ends and bob's begins (through another replica or stock
        // Terraform).
        Lease lease = admin.leases().inNamespace("default").withName(names.leaseName()).get();
        lease.getSpec().setHolderIdentity("bob-1");
        lease
            .getMetadata()
            .getAnnotations()
            .put(
                LeaseLock.LOCK_INFO_ANNOTATION,
                new LockInfo("bob-1", "OperationTypeApply", "", "bob@ci", "1.11.4", "", "")
                    .toJson());
        admin.resource(lease).update();
        Thread.sleep(deadline.plusMillis(500).toMillis());
        gate.resume();

        LockService.Answer late = force.get(30, TimeUnit.SECONDS);
        assertThat(late).isInstanceOf(LockService.Refused.class);
        assertThat(((LockService.Refused) late).refusal()).isEqualTo(LockService.Refusal.TOO_LATE);
        assertThat(((LockService.Refused) late).message()).contains("nothing was released");
        assertThat(admin.leases().inNamespace("default").withName(names.leaseName()).get())
            .extracting(l -> l.getSpec().getHolderIdentity())
            .isEqualTo("bob-1");

        // Asked again, in time, it breaks the lock as it is then.
        assertThat(
                locks.forceUnlock(
                    names, Optional.empty(), Instant.now().plus(Duration.ofSeconds(5))))
            .isInstanceOf(LockService.Released.class);
        assertThat(admin.leases().inNamespace("default").withName(names.leaseName()).get())
            .extracting(l -> l.getSpec().getHolderIdentity())
            .isNull();
      }
    }
  }
}
