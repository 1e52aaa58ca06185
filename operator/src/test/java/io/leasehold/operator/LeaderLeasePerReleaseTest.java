package io.leasehold.operator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.TerraformState;
import io.leasehold.embedded.EmbeddedKubernetes;
import java.time.Duration;
import java.util.Optional;
import java.util.Set;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class LeaderLeasePerReleaseTest {

  @Test
  @DisplayName(
      "Two installations in one namespace, each with its own leader Lease, each elect a leader"
          + " and reconcile the namespaces they watch")
  void twoReleasesTwoLeaders() {
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient a = api.newClient();
        KubernetesClient b = api.newClient();
        KubernetesClient user = api.newClient()) {
      for (String ns : new String[] {"team-a", "team-b", "ops"}) {
        user.namespaces()
            .resource(new NamespaceBuilder().withNewMetadata().withName(ns).endMetadata().build())
            .create();
      }
      try (LeaseholdOperator first =
              LeaseholdOperator.start(
                  a,
                  new LeaseholdOperator.Options(Set.of("team-a"), Optional.of("ops"), "a-0")
                      .withLeaderLease("release-a-leader"));
          LeaseholdOperator second =
              LeaseholdOperator.start(
                  b,
                  new LeaseholdOperator.Options(Set.of("team-b"), Optional.of("ops"), "b-0")
                      .withLeaderLease("release-b-leader"))) {
        for (String ns : new String[] {"team-a", "team-b"}) {
          TerraformState s = new TerraformState();
          s.getMetadata().setName("net");
          s.getMetadata().setNamespace(ns);
          user.resource(s).create();
        }
        await()
            .atMost(Duration.ofSeconds(30))
            .until(() -> status(user, "team-a") && status(user, "team-b"));
        assertThat(holder(user, "release-a-leader")).isEqualTo("a-0");
        assertThat(holder(user, "release-b-leader")).isEqualTo("b-0");
        assertThat(first.readiness().ok()).isTrue();
        assertThat(second.readiness().detail()).contains("leader b-0 (this replica)");
      }
    }
  }

  private static boolean status(KubernetesClient c, String ns) {
    TerraformState s = c.resources(TerraformState.class).inNamespace(ns).withName("net").get();
    return s != null && s.getStatus() != null;
  }

  private static String holder(KubernetesClient c, String name) {
    io.fabric8.kubernetes.api.model.coordination.v1.Lease l =
        c.leases().inNamespace("ops").withName(name).get();
    return l == null || l.getSpec() == null ? null : l.getSpec().getHolderIdentity();
  }
}
