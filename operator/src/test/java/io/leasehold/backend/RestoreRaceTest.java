package io.leasehold.backend;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.leasehold.api.TerraformState;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.TerraformStates;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/** Restores racing writes, through two backends at once as two replicas would serve them. */
class RestoreRaceTest {

  private static final ObjectMapper JSON = new ObjectMapper();

  private record Outcome(boolean restore, int status, String body) {}

  @Test
  @DisplayName(
      "Restores racing writes on two replicas each either land or are refused with the reason"
          + " (409, 423), never 500, and the state stays whole")
  void restoresRacingWrites() throws Exception {
    try (OperatorHarness h = OperatorHarness.start()) {
      BackendClient first = new BackendClient(h.startBackend(64L * 1024 * 1024));
      // A second backend server with its own request handling and writers.
      HttpBackend secondServer =
          io.leasehold.cli.Replica.serve(
              h.operator(),
              new io.leasehold.cli.Replica.Backend(
                  Access.NONE,
                  JobPods.NONE,
                  new HttpBackend.Config("127.0.0.1", 0, Duration.ofMinutes(1)),
                  64L * 1024 * 1024));
      try {
        BackendClient second = new BackendClient(secondServer.url());
        TerraformState s = new TerraformState();
        s.getMetadata().setName("raced");
        s.getMetadata().setNamespace(NAMESPACE);
        s.getSpec().getHistory().setKeep(100);
        h.client().resource(s).create();
        String state = NAMESPACE + "/raced";
        for (int serial = 1; serial <= 3; serial++) {
          assertThat(
                  first
                      .post(state, null, TerraformStates.stateJson(serial, "lin-r", serial))
                      .status())
              .isEqualTo(200);
        }
        String oldest =
            JSON.readTree(first.get(state + "/history").body())
                .get("versions")
                .get(2)
                .get("id")
                .asText();

        AtomicLong serial = new AtomicLong(100);
        List<Outcome> outcomes = Collections.synchronizedList(new ArrayList<>());
        ExecutorService pool = Executors.newFixedThreadPool(6);
        List<Future<?>> done = new ArrayList<>();
        for (int t = 0; t < 6; t++) {
          BackendClient client = t % 2 == 0 ? first : second;
          boolean restorer = t < 2;
          done.add(
              pool.submit(
                  () -> {
                    for (int i = 0; i < 8; i++) {
                      BackendClient.Response r =
                          restorer
                              ? client.send(
                                  "POST", state + "/history/" + oldest + "/restore", null, Map.of())
                              : client.post(
                                  state,
                                  null,
                                  TerraformStates.stateJson(serial.incrementAndGet(), "lin-r", 1));
                      outcomes.add(new Outcome(restorer, r.status(), r.body()));
                    }
                    return null;
                  }));
        }
        for (Future<?> f : done) {
          f.get();
        }
        pool.shutdown();

        assertThat(outcomes).hasSize(48);
        System.out.printf(
            "restore race: %s%n",
            outcomes.stream()
                .collect(
                    java.util.stream.Collectors.groupingBy(
                        o -> (o.restore() ? "restore " : "write ") + o.status(),
                        java.util.TreeMap::new,
                        java.util.stream.Collectors.counting())));
        for (Outcome outcome : outcomes) {
          if (outcome.restore()) {
            assertThat(outcome.status()).as(outcome.toString()).isIn(200, 409, 423);
          } else if (outcome.status() == 503) {
            // A write meeting one in progress on the other replica is told to retry (Terraform
            // retries a 503 by itself).
            assertThat(outcome.body()).contains("is in progress");
          } else {
            assertThat(outcome.status()).as(outcome.toString()).isIn(200, 409, 423);
          }
          if (outcome.status() != 200) {
            assertThat(outcome.body())
                .as("a refusal says why")
                .containsAnyOf(
                    "Nothing was written", "nothing was restored", "Nothing was written");
          }
        }
        assertThat(outcomes).anyMatch(o -> o.restore() && o.status() == 200);
        assertThat(first.get(state).status()).isEqualTo(200);
        assertThat(second.get(state).status()).isEqualTo(200);
      } finally {
        secondServer.close();
      }
    }
  }

  @Test
  @DisplayName(
      "A burst of restores larger than the backend's worker pool is answered in full: a restore"
          + " takes the lock on its own worker, never waiting for a task queued behind it")
  void restoresBeyondTheWorkerPoolAreAnswered() throws Exception {
    try (OperatorHarness h = OperatorHarness.start()) {
      BackendClient backend = new BackendClient(h.startBackend(64L * 1024 * 1024));
      TerraformState s = new TerraformState();
      s.getMetadata().setName("burst");
      s.getMetadata().setNamespace(NAMESPACE);
      h.client().resource(s).create();
      String state = NAMESPACE + "/burst";
      for (int serial = 1; serial <= 2; serial++) {
        assertThat(
                backend
                    .post(state, null, TerraformStates.stateJson(serial, "lin-b", serial))
                    .status())
            .isEqualTo(200);
      }
      String older =
          JSON.readTree(backend.get(state + "/history").body())
              .get("versions")
              .get(1)
              .get("id")
              .asText();
      int restores = 96;
      ExecutorService pool = Executors.newFixedThreadPool(restores);
      List<Future<BackendClient.Response>> answers = new ArrayList<>();
      long started = System.nanoTime();
      for (int i = 0; i < restores; i++) {
        answers.add(
            pool.submit(
                () ->
                    backend.send(
                        "POST", state + "/history/" + older + "/restore", null, Map.of())));
      }
      java.util.Map<Integer, Integer> byStatus = new java.util.TreeMap<>();
      for (Future<BackendClient.Response> f : answers) {
        BackendClient.Response r = f.get(120, java.util.concurrent.TimeUnit.SECONDS);
        byStatus.merge(r.status(), 1, Integer::sum);
        assertThat(r.status()).as(r.body()).isIn(200, 409, 423);
      }
      pool.shutdown();
      System.out.printf(
          "%d restores at once: %s in %d ms%n",
          restores, byStatus, (System.nanoTime() - started) / 1_000_000);
      assertThat(byStatus).containsKey(200);
    }
  }
}
