package io.leasehold.fault;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.server.mock.KubernetesMockServer;
import io.leasehold.api.TerraformState;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.state.StateNames;
import io.leasehold.state.StateStore;
import io.leasehold.state.StoredState;
import io.leasehold.state.WriteJournal;
import io.leasehold.support.ChildOperator;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.TerraformStates;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * A chunked write cut short (the API failing at any of its three Secrets, for a moment or for
 * longer, or the operator killed in the middle) never leaves a torn state: it ends as the old
 * version or the new one, with no manual step, an Event says which, and the reply told the truth.
 */
class TornWriteTest {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static final HttpClient HTTP =
      HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();

  /** About 3.5 MB of incompressible JSON: three Secrets once gzip'd. */
  private static final int SIZE = 3_500_000;

  static Stream<Arguments> faults() {
    return Stream.of(
        Arguments.of(0, 1, "old"),
        Arguments.of(1, 1, "new"),
        Arguments.of(2, 1, "new"),
        Arguments.of(0, 6, "old"),
        Arguments.of(1, 6, "new"),
        Arguments.of(2, 6, "new"));
  }

  @ParameterizedTest(name = "Secret {0} of 3 failing {1} time(s): the {2} version")
  @MethodSource("faults")
  @DisplayName(
      "When the API fails at a Secret of a 3-chunk write, the state ends whole (old or new), and"
          + " the reply and an Event say which")
  void apiFailsAtEachSecret(int secret, int failures, String ends) throws Exception {
    try (OperatorHarness h = OperatorHarness.start()) {
      String name = "torn-s" + secret + "-f" + failures;
      String url = h.startBackend(64L * 1024 * 1024) + NAMESPACE + "/" + name;
      create(h.client(), name);
      StateNames names = new StateNames(NAMESPACE, name, "default");
      byte[] v1 = state(1, 1);
      byte[] v2 = state(2, 2);
      assertThat(post(url, v1).statusCode()).isEqualTo(200);
      assertThat(secretCount(h.client(), names)).isEqualTo(3);

      String path =
          "/api/v1/namespaces/"
              + NAMESPACE
              + "/secrets/"
              + (secret == 0 ? names.secretName() : names.chunkSecretName(secret));
      h.api()
          .mockServer()
          .expect()
          .put()
          .withPath(path)
          .andReturn(500, "{\"kind\":\"Status\",\"code\":500,\"message\":\"injected\"}")
          .times(failures);

      HttpResponse<String> reply = post(url, v2);
      byte[] expected = ends.equals("old") ? v1 : v2;
      if (ends.equals("old")) {
        assertThat(reply.statusCode()).as(reply.body()).isEqualTo(503);
        assertThat(reply.body()).contains("dropped").contains("Nothing was written");
      } else if (failures == 1) {
        assertThat(reply.statusCode()).as(reply.body()).isEqualTo(200);
        assertThat(reply.body()).contains("stored").contains("completed from its copy");
      } else {
        assertThat(reply.statusCode()).as(reply.body()).isEqualTo(503);
        assertThat(reply.body())
            .contains("settled automatically")
            .contains("completed as serial 2");
      }
      // Settled with no manual step: by the writer at once, or by the operator once the API
      // works again.
      await()
          .atMost(Duration.ofSeconds(60))
          .untilAsserted(
              () -> {
                assertThat(journal(h.client(), names)).isEmpty();
                assertThat(get(url)).isEqualTo(expected);
              });
      assertThat(secretCount(h.client(), names)).isEqualTo(3);
      String event = ends.equals("old") ? "WriteDropped" : "WriteCompleted";
      await()
          .atMost(Duration.ofSeconds(10))
          .until(() -> h.events(name).stream().anyMatch(e -> e.startsWith("Warning " + event)));
      JsonNode versions = history(url);
      if (ends.equals("old")) {
        assertThat(versions.findValuesAsText("serial")).containsExactly("1");
      } else {
        assertThat(versions.findValuesAsText("serial")).containsExactly("2", "1");
      }
    }
  }

  @Test
  @DisplayName(
      "When the operator is killed in the middle of a 3-chunk write, the next operator finishes"
          + " it from its journal: the state is the new version, whole, with no manual step")
  void operatorKilledMidWrite() throws Exception {
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient client = api.newClient()) {
      create(client, "killed");
      StateNames names = new StateNames(NAMESPACE, "killed", "default");
      byte[] v1 = state(1, 1);
      byte[] v2 = state(2, 2);
      ChildOperator first = ChildOperator.start(api, "384m", 64L * 1024 * 1024);
      try {
        String url = first.url() + NAMESPACE + "/killed";
        assertThat(post(url, v1).statusCode()).isEqualTo(200);

        // The write stops at its second Secret, and the operator dies there.
        CountDownLatch reached = new CountDownLatch(1);
        CountDownLatch killed = new CountDownLatch(1);
        KubernetesMockServer server = api.mockServer();
        server
            .expect()
            .put()
            .withPath("/api/v1/namespaces/" + NAMESPACE + "/secrets/" + names.chunkSecretName(1))
            .andReply(
                500,
                request -> {
                  reached.countDown();
                  try {
                    killed.await(60, TimeUnit.SECONDS);
                  } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                  }
                  return "{\"kind\":\"Status\",\"code\":500,\"message\":\"gone\"}";
                })
            .once();
        CompletableFuture<?> write = CompletableFuture.runAsync(() -> post(url, v2));
        assertThat(reached.await(60, TimeUnit.SECONDS)).as("the write reached Secret 1").isTrue();
        first.kill();
        killed.countDown();
        assertThat(write).failsWithin(Duration.ofSeconds(30));
      } finally {
        first.kill();
      }

      // Torn now: the main Secret holds the new version, its chunks the old one.
      assertThat(journal(client, names)).isPresent();

      try (ChildOperator second = ChildOperator.start(api, "384m", 64L * 1024 * 1024)) {
        String url = second.url() + NAMESPACE + "/killed";
        await()
            .atMost(Duration.ofSeconds(90))
            .pollInterval(Duration.ofMillis(500))
            .untilAsserted(
                () -> {
                  assertThat(journal(client, names)).isEmpty();
                  assertThat(get(url)).isEqualTo(v2);
                });
        assertThat(secretCount(client, names)).isEqualTo(3);
        StoredState.Compressed stored =
            new StateStore(client, names).read().orElseThrow().compressed();
        assertThat(stored.parts()).hasSize(3);
        await()
            .atMost(Duration.ofSeconds(10))
            .until(
                () ->
                    client.v1().events().inNamespace(NAMESPACE).list().getItems().stream()
                        .anyMatch(
                            e ->
                                "WriteCompleted".equals(e.getReason())
                                    && e.getMessage().contains("serial 2")));
        assertThat(history(url).findValuesAsText("serial")).containsExactly("2", "1");
      }
    }
  }

  @Test
  @DisplayName(
      "When the operator is killed while it copies a state's first version into history, the state"
          + " reads as not stored yet (never as deleted by hand), the next operator drops the"
          + " copy cut short, and the next write is stored")
  void operatorKilledDuringFirstWritesCopy() throws Exception {
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient client = api.newClient()) {
      create(client, "first");
      StateNames names = new StateNames(NAMESPACE, "first", "default");
      String copyPrefix = "lh-history-default-first-";
      ChildOperator first = ChildOperator.start(api, "384m", 64L * 1024 * 1024);
      try {
        // The operator dies the moment the second of the copy's three Secrets is stored: it never
        // hears the answer, and nothing after it is sent.
        CountDownLatch killed = new CountDownLatch(1);
        api.onStored(
            w -> {
              if (killed.getCount() > 0
                  && "POST".equals(w.method())
                  && w.object().path("metadata").path("name").asText().startsWith(copyPrefix)
                  && w.object().path("metadata").path("name").asText().endsWith("-1")) {
                first.kill();
                killed.countDown();
              }
            });
        String url = first.url() + NAMESPACE + "/first";
        CompletableFuture<?> write = CompletableFuture.runAsync(() -> post(url, state(1, 1)));
        assertThat(killed.await(60, TimeUnit.SECONDS)).as("the copy's second Secret").isTrue();
        assertThat(write).failsWithin(Duration.ofSeconds(30));
      } finally {
        first.kill();
      }
      // What the killed writer left: its journal, two of the copy's three Secrets, no state.
      assertThat(journal(client, names)).as("the write's journal").isPresent();
      assertThat(historySecrets(client, copyPrefix)).hasSize(2);

      try (ChildOperator second = ChildOperator.start(api, "384m", 64L * 1024 * 1024)) {
        String url = second.url() + NAMESPACE + "/first";
        // While the journal waits out its writer's deadline: no state yet, not a state deleted
        // by hand.
        assertThat(new String(get(url), StandardCharsets.UTF_8))
            .startsWith("status 404")
            .contains("no state stored yet");
        await()
            .atMost(Duration.ofSeconds(90))
            .pollInterval(Duration.ofMillis(500))
            .untilAsserted(
                () -> {
                  assertThat(journal(client, names)).isEmpty();
                  assertThat(historySecrets(client, copyPrefix)).isEmpty();
                });
        await()
            .atMost(Duration.ofSeconds(10))
            .until(
                () ->
                    client.v1().events().inNamespace(NAMESPACE).list().getItems().stream()
                        .anyMatch(e -> "WriteDropped".equals(e.getReason())));
        assertThat(new String(get(url), StandardCharsets.UTF_8)).startsWith("status 404");
        byte[] v2 = state(2, 2);
        assertThat(post(url, v2).statusCode()).isEqualTo(200);
        assertThat(get(url)).isEqualTo(v2);
        assertThat(history(url).findValuesAsText("serial")).containsExactly("2");
      }
    }
  }

  private static List<Secret> historySecrets(KubernetesClient client, String prefix) {
    return client.secrets().inNamespace(NAMESPACE).list().getItems().stream()
        .filter(s -> s.getMetadata().getName().startsWith(prefix))
        .toList();
  }

  private static void create(KubernetesClient client, String name) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    client.resource(s).create();
  }

  private static byte[] state(long serial, long seed) {
    return TerraformStates.randomState(serial, "lin-torn", SIZE, seed)
        .getBytes(StandardCharsets.UTF_8);
  }

  private static HttpResponse<String> post(String url, byte[] body) {
    try {
      return HTTP.send(
          HttpRequest.newBuilder(URI.create(url))
              .timeout(Duration.ofSeconds(120))
              .POST(HttpRequest.BodyPublishers.ofByteArray(body))
              .build(),
          HttpResponse.BodyHandlers.ofString());
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }

  private static byte[] get(String url) throws Exception {
    HttpResponse<InputStream> r =
        HTTP.send(
            HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(60)).build(),
            HttpResponse.BodyHandlers.ofInputStream());
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    try (InputStream in = r.body()) {
      in.transferTo(out);
    }
    if (r.statusCode() != 200) {
      return ("status " + r.statusCode() + ": " + out).getBytes(StandardCharsets.UTF_8);
    }
    return out.toByteArray();
  }

  private static JsonNode history(String url) throws Exception {
    return JSON.readTree(get(url + "/history")).get("versions");
  }

  private static Optional<Secret> journal(KubernetesClient client, StateNames names) {
    return Optional.ofNullable(
        client
            .secrets()
            .inNamespace(NAMESPACE)
            .withName(new WriteJournal(client, names).name())
            .get());
  }

  private static long secretCount(KubernetesClient client, StateNames names) {
    List<Secret> secrets =
        client
            .secrets()
            .inNamespace(NAMESPACE)
            .withLabel(StateNames.LABEL_SUFFIX, names.name())
            .list()
            .getItems();
    return secrets.stream().filter(s -> names.chunkIndex(s.getMetadata().getName()) >= 0).count();
  }
}
