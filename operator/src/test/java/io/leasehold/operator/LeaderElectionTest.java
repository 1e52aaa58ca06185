package io.leasehold.operator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.Event;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.TerraformState;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.embedded.StoredWrite;
import io.leasehold.state.StateNames;
import io.leasehold.support.RunnerJobFixtures;
import io.leasehold.support.TerraformStates;
import java.time.Duration;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class LeaderElectionTest {

  @Test
  @DisplayName(
      "When two replicas run with leader election, then one holds the leader Lease and only it"
          + " acts on TerraformStates; each replica's metrics count both replicas alive and say"
          + " whether it leads")
  void onlyTheLeaderReconciles() {
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient a = api.newClient();
        KubernetesClient b = api.newClient();
        KubernetesClient user = api.newClient();
        LeaseholdOperator first =
            LeaseholdOperator.start(
                a, new LeaseholdOperator.Options(Set.of(), Optional.of("default"), "replica-a"));
        LeaseholdOperator second =
            LeaseholdOperator.start(
                b, new LeaseholdOperator.Options(Set.of(), Optional.of("default"), "replica-b"))) {
      await()
          .atMost(Duration.ofSeconds(30))
          .until(
              () -> {
                Lease l =
                    user.leases()
                        .inNamespace("default")
                        .withName(LeaseholdOperator.LEADER_LEASE)
                        .get();
                return l != null && l.getSpec().getHolderIdentity() != null;
              });
      String leader =
          user.leases()
              .inNamespace("default")
              .withName(LeaseholdOperator.LEADER_LEASE)
              .get()
              .getSpec()
              .getHolderIdentity();
      assertThat(leader).isIn("replica-a", "replica-b");
      // What /metrics tells: each replica sees both heartbeats, and only the leader says it leads.
      await()
          .atMost(Duration.ofSeconds(30))
          .until(
              () ->
                  gauge(first, "leasehold.replicas.alive") == 2
                      && gauge(second, "leasehold.replicas.alive") == 2);
      assertThat(gauge(first, "leasehold.leader") + gauge(second, "leasehold.leader")).isEqualTo(1);
      assertThat(gauge("replica-a".equals(leader) ? first : second, "leasehold.leader"))
          .isEqualTo(1);

      for (String name : List.of("one", "two", "three")) {
        // Terraform's lock first: the leader creates a missing Lease as soon as it sees the state.
        user.resource(
                TerraformStates.heldLease(
                    new StateNames("default", name, "default"),
                    TerraformStates.terraformLock("id", "x@y")))
            .create();
        TerraformState s = new TerraformState();
        s.getMetadata().setName(name);
        s.getMetadata().setNamespace("default");
        user.resource(s).create();
      }
      await()
          .atMost(Duration.ofSeconds(30))
          .until(
              () ->
                  List.of("one", "two", "three").stream()
                      .allMatch(
                          n -> {
                            TerraformState s =
                                user.resources(TerraformState.class)
                                    .inNamespace("default")
                                    .withName(n)
                                    .get();
                            return s.getStatus() != null;
                          }));
      List<Event> events = user.v1().events().inNamespace("default").list().getItems();
      assertThat(events)
          .isNotEmpty()
          .allSatisfy(e -> assertThat(e.getReportingInstance()).isEqualTo(leader));
    }
  }

  private static double gauge(LeaseholdOperator operator, String name) {
    return operator.options().metrics().registry().get(name).gauge().value();
  }

  @Test
  @DisplayName(
      "When the leader is stopped gracefully, then it clears its holder from the election Lease"
          + " before it returns, and the other replica leads within 2 s instead of waiting out"
          + " the 15 s lease")
  void aGracefulStopHandsLeadershipOnAtOnce() {
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient a = api.newClient();
        KubernetesClient b = api.newClient()) {
      List<String> holders = new java.util.concurrent.CopyOnWriteArrayList<>();
      api.onStored(
          w -> {
            if (w.path().contains("/leases/" + LeaseholdOperator.LEADER_LEASE)) {
              holders.add(holderOf(w));
            }
          });
      LeaseholdOperator first =
          LeaseholdOperator.start(
              a, new LeaseholdOperator.Options(Set.of(), Optional.of("default"), "replica-a"));
      LeaseholdOperator second = null;
      try {
        await().atMost(Duration.ofSeconds(30)).until(() -> first.leadership().leading());
        second =
            LeaseholdOperator.start(
                b, new LeaseholdOperator.Options(Set.of(), Optional.of("default"), "replica-b"));
        LeaseholdOperator candidate = second;
        assertThat(candidate.leadership().leading()).isFalse();

        long stopping = System.nanoTime();
        first.close();
        long closed = System.nanoTime();
        List<String> atClose = new ArrayList<>(holders);
        // The stopping replica cleared its holder itself: the last write it made before it
        // returned empties the holder (a Lease that merely ran out would still name it).
        assertThat(atClose).contains("replica-a");
        assertThat(atClose.subList(atClose.lastIndexOf("replica-a"), atClose.size()))
            .as("election Lease holders written up to the end of close()")
            .containsSubsequence("replica-a", "");

        await()
            .atMost(Duration.ofSeconds(5))
            .pollInterval(Duration.ofMillis(20))
            .until(() -> candidate.leadership().leading());
        long leads = System.nanoTime();
        System.out.printf(
            "graceful handover: close() took %d ms; replica-b led %d ms after close() began,"
                + " %d ms after it returned%n",
            (closed - stopping) / 1_000_000,
            (leads - stopping) / 1_000_000,
            (leads - closed) / 1_000_000);
        assertThat(holders.get(holders.size() - 1)).isEqualTo("replica-b");
        assertThat(holders.subList(holders.lastIndexOf("replica-a"), holders.size()))
            .as("the Lease passed from replica-a to replica-b through a release, not an expiry")
            .containsSubsequence("replica-a", "", "replica-b");
      } finally {
        first.close();
        if (second != null) {
          second.close();
        }
      }
    }
  }

  @Test
  @DisplayName(
      "When the leader is stopped gracefully while a runner Job holds a state's lock, then the"
          + " lock stays the Job's, renewed on the way out so that it has its whole lease"
          + " duration, and the next leader goes on renewing it")
  void aGracefulStopLeavesARunningJobItsLock() {
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient a = api.newClient();
        KubernetesClient b = api.newClient();
        KubernetesClient user = api.newClient()) {
      LeaseholdOperator first =
          LeaseholdOperator.start(
              a, new LeaseholdOperator.Options(Set.of(), Optional.of("default"), "replica-a"));
      LeaseholdOperator second = null;
      try {
        await().atMost(Duration.ofSeconds(30)).until(() -> first.leadership().leading());
        TerraformState state = new TerraformState();
        state.getMetadata().setName("held");
        state.getMetadata().setNamespace("default");
        // Renewed every 5 s: not due again when the leader stops, a second or two later.
        state.getSpec().getLock().setLeaseDurationSeconds(15);
        user.resource(state).create();
        RunnerJobFixtures.create(user, "held-run", "held");
        await()
            .atMost(Duration.ofSeconds(10))
            .until(() -> RunnerJobFixtures.running(RunnerJobFixtures.get(user, "held-run")));
        StateNames names = new StateNames("default", "held", "default");
        String holder = lockLease(user, names).getSpec().getHolderIdentity();
        second =
            LeaseholdOperator.start(
                b, new LeaseholdOperator.Options(Set.of(), Optional.of("default"), "replica-b"));
        LeaseholdOperator next = second;

        Instant closing = Instant.now().truncatedTo(ChronoUnit.MILLIS);
        first.close();
        Lease left = lockLease(user, names);
        assertThat(left.getSpec().getHolderIdentity()).isEqualTo(holder);
        Instant renewedOnLeaving = left.getSpec().getRenewTime().toInstant();
        assertThat(renewedOnLeaving).as("renewed on the way out").isAfterOrEqualTo(closing);

        await().atMost(Duration.ofSeconds(5)).until(() -> next.leadership().leading());
        await()
            .atMost(Duration.ofSeconds(15))
            .untilAsserted(
                () -> {
                  Lease now = lockLease(user, names);
                  assertThat(now.getSpec().getHolderIdentity()).isEqualTo(holder);
                  assertThat(now.getSpec().getRenewTime().toInstant())
                      .as("renewed by the next leader")
                      .isAfter(renewedOnLeaving);
                });
        assertThat(RunnerJobFixtures.running(RunnerJobFixtures.get(user, "held-run"))).isTrue();
      } finally {
        first.close();
        if (second != null) {
          second.close();
        }
      }
    }
  }

  private static Lease lockLease(KubernetesClient user, StateNames names) {
    return user.leases().inNamespace(names.namespace()).withName(names.leaseName()).get();
  }

  /** The holder a stored write of the election Lease names, "" when none. */
  private static String holderOf(StoredWrite w) {
    var holder = w.object().path("spec").path("holderIdentity");
    return holder.isMissingNode() || holder.isNull() ? "" : holder.asText();
  }
}
