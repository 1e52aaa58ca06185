package io.leasehold.fault;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.TerraformState;
import io.leasehold.cli.Replica;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.lock.LockInfo;
import io.leasehold.support.RawLock;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Optional;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/** A request the Kubernetes API fails for a while is answered "try again", not "broken". */
class ApiFailureAnswerTest {

  @Test
  @DisplayName(
      "An UNLOCK whose Lease write gets no answer from the API is answered 503 with Retry-After"
          + " (send it again), not 500; once the API answers again the same UNLOCK succeeds")
  void anUnansweredApiCallIsTryAgain() throws Exception {
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient admin = api.newClient()) {
      GatedReplica gated = GatedReplica.start(api, "replica", Optional.empty());
      Replica replica = gated.replica();
      ApiGate gate = gated.gate();
      try {
        TerraformState s = new TerraformState();
        s.getMetadata().setName("flaky");
        s.getMetadata().setNamespace("default");
        admin.resource(s).create();
        await()
            .atMost(Duration.ofSeconds(20))
            .until(
                () ->
                    admin
                            .leases()
                            .inNamespace("default")
                            .withName("lock-tfstate-default-flaky")
                            .get()
                        != null);
        LockInfo info = new LockInfo("l-1", "OperationTypeApply", "", "alice@ci", "1.11.4", "", "");
        RawLock lock = RawLock.send(replica.url(), "default/flaky", info, "");
        assertThat(lock.answer(Duration.ofSeconds(20)).status()).isEqualTo(200);

        gate.cut();
        HttpResponse<String> unlock = unlock(replica.url(), info);
        assertThat(unlock.statusCode()).as(unlock.body()).isEqualTo(503);
        assertThat(unlock.body()).contains("the Kubernetes API failed").contains("send it again");
        assertThat(unlock.headers().firstValue("Retry-After")).isPresent();
        assertThat(
                admin
                    .leases()
                    .inNamespace("default")
                    .withName("lock-tfstate-default-flaky")
                    .get()
                    .getSpec()
                    .getHolderIdentity())
            .as("nothing was released")
            .isEqualTo("l-1");

        gate.mend();
        HttpResponse<String> again = unlock(replica.url(), info);
        assertThat(again.statusCode()).as(again.body()).isEqualTo(200);
      } finally {
        gated.close();
      }
    }
  }

  private static HttpResponse<String> unlock(String base, LockInfo info) throws Exception {
    return HttpClient.newHttpClient()
        .send(
            HttpRequest.newBuilder(URI.create(base + "default/flaky/lock"))
                .method("UNLOCK", HttpRequest.BodyPublishers.ofString(info.toJson()))
                .header("Content-Type", "application/json")
                .build(),
            HttpResponse.BodyHandlers.ofString());
  }
}
