package io.leasehold.operator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.apiextensions.v1.CustomResourceDefinition;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.server.mock.KubernetesMixedDispatcher;
import io.fabric8.kubernetes.client.server.mock.KubernetesMockServer;
import io.fabric8.mockwebserver.Context;
import io.fabric8.mockwebserver.MockWebServer;
import io.fabric8.mockwebserver.ServerRequest;
import io.fabric8.mockwebserver.ServerResponse;
import io.leasehold.api.TerraformState;
import io.leasehold.embedded.EmbeddedKubernetes;
import java.io.InputStream;
import java.time.Duration;
import java.util.HashMap;
import java.util.Optional;
import java.util.Queue;
import java.util.Set;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * On a cluster that does not enforce the CRD's validation rules (CEL needs Kubernetes 1.25+), the
 * operator itself refuses names that would break Terraform, and says why.
 */
class InvalidNameTest {

  @Test
  @DisplayName(
      "When a TerraformState's name ends in -<digits> and the API did not refuse it, then the"
          + " operator marks it Degraded with the reason and creates no Lease")
  void operatorRefusesWhatAdmissionMissed() throws Exception {
    // The plain CRUD mock: it stores what it is given and enforces no CRD validation.
    var responses = new HashMap<ServerRequest, Queue<ServerResponse>>();
    KubernetesMockServer server =
        new KubernetesMockServer(
            new Context(),
            new MockWebServer(),
            responses,
            new KubernetesMixedDispatcher(responses),
            false);
    server.init();
    try (KubernetesClient client = server.createClient()) {
      try (InputStream crd =
          EmbeddedKubernetes.class.getResourceAsStream(EmbeddedKubernetes.CRD_RESOURCE)) {
        client
            .resource(
                client.getKubernetesSerialization().unmarshal(crd, CustomResourceDefinition.class))
            .create();
      }
      TerraformState state = new TerraformState();
      state.getMetadata().setName("network-2");
      state.getMetadata().setNamespace("test");
      client.resource(state).create();

      try (LeaseholdOperator operator =
          LeaseholdOperator.start(
              client, new LeaseholdOperator.Options(Set.of(), Optional.empty(), "test"))) {
        await()
            .atMost(Duration.ofSeconds(20))
            .untilAsserted(
                () -> {
                  TerraformState s =
                      client
                          .resources(TerraformState.class)
                          .inNamespace("test")
                          .withName("network-2")
                          .get();
                  assertThat(s.getStatus()).isNotNull();
                  var degraded =
                      Conditions.find(s.getStatus().getConditions(), "Degraded").orElseThrow();
                  assertThat(degraded.getStatus()).isEqualTo("True");
                  assertThat(degraded.getReason()).isEqualTo("InvalidName");
                  assertThat(degraded.getMessage()).contains("ends in '-<digits>'");
                });
        assertThat(client.leases().inNamespace("test").list().getItems()).isEmpty();
      }
    } finally {
      server.destroy();
    }
  }
}
