package io.leasehold.operator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.Event;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.TerraformState;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.state.StateNames;
import io.leasehold.support.TerraformStates;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class LeaderElectionTest {

  @Test
  @DisplayName(
      "When two replicas run with leader election, then one holds the leader Lease and only it"
          + " acts on TerraformStates")
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
}
