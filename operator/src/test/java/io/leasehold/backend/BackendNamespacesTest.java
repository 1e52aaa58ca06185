package io.leasehold.backend;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.TerraformState;
import io.leasehold.cli.Replica;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.operator.LeaseholdOperator;
import io.leasehold.support.TerraformStates;
import java.time.Duration;
import java.util.Optional;
import java.util.Set;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class BackendNamespacesTest {

  @Test
  @DisplayName(
      "With --namespace, the backend serves only the watched namespaces and says so for others")
  void servesOnlyWatchedNamespaces() throws Exception {
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient client = api.newClient()) {
      for (String ns : new String[] {"team-a", "team-b"}) {
        client
            .namespaces()
            .resource(new NamespaceBuilder().withNewMetadata().withName(ns).endMetadata().build())
            .create();
        TerraformState s = new TerraformState();
        s.getMetadata().setName("net");
        s.getMetadata().setNamespace(ns);
        client.resource(s).create();
      }
      try (Replica backend =
          Replica.start(
              client,
              new LeaseholdOperator.Options(Set.of("team-a"), Optional.empty(), "test"),
              new Replica.Backend(
                  Access.NONE,
                  JobPods.NONE,
                  new HttpBackend.Config("127.0.0.1", 0, Duration.ofSeconds(5)),
                  1 << 20))) {
        BackendClient http = new BackendClient(backend.url());
        assertThat(http.post("team-a/net", null, TerraformStates.stateJson(1, "l", 1)).status())
            .isEqualTo(200);
        BackendClient.Response other = http.get("team-b/net");
        assertThat(other.status()).isEqualTo(404);
        assertThat(other.body()).contains("namespace team-b is not served").contains("team-a");
        assertThat(http.lock("team-b/net", BackendClient.lockInfo("x", "y"), null).status())
            .isEqualTo(404);
      }
    }
  }
}
