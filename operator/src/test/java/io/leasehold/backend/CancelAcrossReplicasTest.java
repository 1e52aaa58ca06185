package io.leasehold.backend;

import static io.leasehold.backend.BackendClient.lockInfo;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.leasehold.api.TerraformState;
import io.leasehold.cli.Replica;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.LockService;
import io.leasehold.lock.Ticket;
import io.leasehold.operator.Leadership;
import io.leasehold.operator.LeaseholdOperator;
import io.leasehold.support.RawLock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import org.awaitility.core.ConditionFactory;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * Two replicas: the leader carries out a cancel, and the replica that holds the cancelled client's
 * request (not the leader) answers it.
 */
class CancelAcrossReplicasTest {

  private static final String NS = "default";
  private static EmbeddedKubernetes api;
  private static KubernetesClient user;
  private static final List<KubernetesClient> clients = new ArrayList<>();
  private static final Replica[] replicas = new Replica[2];

  @BeforeAll
  static void start() {
    api = EmbeddedKubernetes.start(0);
    user = api.newClient();
    for (int i = 0; i < 2; i++) {
      KubernetesClient client = api.newClient();
      clients.add(client);
      replicas[i] =
          Replica.start(
              client,
              new LeaseholdOperator.Options(Set.of(), Optional.of(NS), "replica-" + i)
                  .withElection(
                      new Leadership.Timing(
                          Duration.ofSeconds(3), Duration.ofSeconds(2), Duration.ofMillis(300)))
                  .withLocks(new LockService.Settings(Duration.ofSeconds(30))),
              new Replica.Backend(
                  Access.NONE,
                  JobPods.NONE,
                  new HttpBackend.Config("127.0.0.1", 0, Duration.ofMinutes(5)),
                  1 << 20));
    }
  }

  @AfterAll
  static void stop() {
    for (Replica r : replicas) {
      if (r != null) {
        r.close();
      }
    }
    clients.forEach(KubernetesClient::close);
    user.close();
    api.close();
  }

  private static ConditionFactory eventually() {
    return await().atMost(Duration.ofSeconds(20)).pollInterval(Duration.ofMillis(10));
  }

  private static Lease lease(String name) {
    return user.leases().inNamespace(NS).withName("lock-tfstate-default-" + name).get();
  }

  private static List<String> line(String name) {
    return LeaseLock.line(lease(name)).tickets().stream().map(Ticket::id).toList();
  }

  @Test
  @DisplayName(
      "A client waiting on the replica that does not lead is answered 409 by that replica when the"
          + " leader cancels it; the holder keeps the lock and the client behind is served next")
  void cancelledOnTheReplicaThatDoesNotLead() throws Exception {
    eventually()
        .until(
            () ->
                replicas[0].operator().leadership().leading()
                    || replicas[1].operator().leadership().leading());
    int follower = replicas[0].operator().leadership().leading() ? 1 : 0;
    BackendClient http = new BackendClient(replicas[follower].url());
    TerraformState s = new TerraformState();
    s.getMetadata().setName("cancel-across");
    s.getMetadata().setNamespace(NS);
    user.resource(s).create();
    eventually().until(() -> lease("cancel-across") != null);
    String state = NS + "/cancel-across";

    LockInfo holding = lockInfo("across-holder", "holder");
    assertThat(http.lock(state, holding, null).status()).isEqualTo(200);
    LockInfo first = lockInfo("across-first", "first");
    LockInfo second = lockInfo("across-second", "second");
    RawLock cancelled = RawLock.send(replicas[follower].url(), state, first, "?wait=120s");
    eventually().until(() -> line("cancel-across").equals(List.of(first.id())));
    RawLock next = RawLock.send(replicas[1 - follower].url(), state, second, "?wait=120s");
    eventually().until(() -> line("cancel-across").equals(List.of(first.id(), second.id())));

    user.resources(TerraformState.class)
        .inNamespace(NS)
        .withName("cancel-across")
        .patch(
            PatchContext.of(PatchType.JSON_MERGE),
            "{\"metadata\":{\"annotations\":{\"leasehold.io/cancel\":\"" + first.id() + "\"}}}");

    RawLock.Answer answer = cancelled.answer(Duration.ofSeconds(10));
    assertThat(answer).isNotNull();
    assertThat(answer.status()).isEqualTo(409);
    assertThat(answer.body()).contains("cancelled by annotation leasehold.io/cancel");
    assertThat(lease("cancel-across").getSpec().getHolderIdentity()).isEqualTo(holding.id());
    assertThat(line("cancel-across")).containsExactly(second.id());
    assertThat(next.answered(Duration.ZERO)).isFalse();

    assertThat(http.unlock(state, holding).status()).isEqualTo(200);
    RawLock.Answer served = next.answer(Duration.ofSeconds(10));
    assertThat(served).isNotNull();
    assertThat(served.status()).isEqualTo(200);
    assertThat(http.unlock(state, second).status()).isEqualTo(200);
    cancelled.close();
    next.close();
  }
}
