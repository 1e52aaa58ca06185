package io.leasehold.embedded;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.kubernetes.api.model.ConfigMapBuilder;
import io.fabric8.kubernetes.api.model.EventBuilder;
import io.fabric8.kubernetes.api.model.ObjectReferenceBuilder;
import io.fabric8.kubernetes.api.model.SecretBuilder;
import io.fabric8.kubernetes.api.model.batch.v1.CronJob;
import io.fabric8.kubernetes.api.model.batch.v1.CronJobBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.utils.Serialization;
import io.fabric8.mockwebserver.dsl.HttpMethod;
import io.fabric8.mockwebserver.http.Buffer;
import io.fabric8.mockwebserver.http.Headers;
import io.fabric8.mockwebserver.http.MockResponse;
import io.fabric8.mockwebserver.http.RecordedRequest;
import io.leasehold.api.TerraformState;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The embedded API's answers where clients depend on an API server's exact semantics. */
class ApiServerSemanticsTest {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static EmbeddedKubernetes api;
  private static KubernetesClient client;
  private static final HttpClient HTTP = HttpClient.newHttpClient();

  @BeforeAll
  static void start() {
    api = EmbeddedKubernetes.start(0);
    client = api.newClient();
  }

  @AfterAll
  static void stop() {
    client.close();
    api.close();
  }

  private record Answer(int code, String contentType, JsonNode body) {}

  private static Answer send(String method, String path, String contentType, String body)
      throws IOException, InterruptedException {
    HttpRequest.Builder b =
        HttpRequest.newBuilder(URI.create(api.url() + path))
            .method(
                method,
                body == null
                    ? HttpRequest.BodyPublishers.noBody()
                    : HttpRequest.BodyPublishers.ofString(body));
    if (contentType != null) {
      b.header(method.equals("GET") ? "Accept" : "Content-Type", contentType);
    }
    HttpResponse<String> r = HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
    JsonNode parsed = r.body().isEmpty() ? JSON.nullNode() : JSON.readTree(r.body());
    return new Answer(r.statusCode(), r.headers().firstValue("Content-Type").orElse(""), parsed);
  }

  private static Answer get(String path, String accept) throws Exception {
    return send("GET", path, accept, null);
  }

  private static void secret(String name, Map<String, String> labels) {
    client
        .secrets()
        .inNamespace("default")
        .resource(
            new SecretBuilder()
                .withNewMetadata()
                .withName(name)
                .withLabels(labels)
                .endMetadata()
                .addToData("k", "dg==")
                .build())
        .create();
  }

  @Test
  @DisplayName(
      "A status update carrying a resourceVersion that is no longer the stored one is refused"
          + " with 409 and changes nothing; one at the stored version goes through")
  void staleStatusUpdateIsRefused() {
    TerraformState s = new TerraformState();
    s.getMetadata().setName("status-guarded");
    s.getMetadata().setNamespace("default");
    client.resource(s).create();
    TerraformState read =
        client
            .resources(TerraformState.class)
            .inNamespace("default")
            .withName("status-guarded")
            .get();
    read.setStatus(new io.leasehold.api.TerraformStateStatus());
    read.getStatus().setHolder("first");
    TerraformState first = client.resource(read).updateStatus();

    read.getStatus().setHolder("stale");
    org.assertj.core.api.Assertions.assertThatThrownBy(() -> client.resource(read).updateStatus())
        .isInstanceOf(io.fabric8.kubernetes.client.KubernetesClientException.class)
        .hasMessageContaining("the object has been modified")
        .matches(
            e -> ((io.fabric8.kubernetes.client.KubernetesClientException) e).getCode() == 409);
    TerraformState stored =
        client
            .resources(TerraformState.class)
            .inNamespace("default")
            .withName("status-guarded")
            .get();
    assertThat(stored.getStatus().getHolder()).isEqualTo("first");

    first.getStatus().setHolder("second");
    assertThat(client.resource(first).updateStatus().getStatus().getHolder()).isEqualTo("second");
  }

  @Test
  @DisplayName(
      "A DELETE whose uid or resourceVersion precondition does not match the stored object is"
          + " refused with 409 and deletes nothing; a matching one deletes")
  void deletePreconditions() throws Exception {
    secret("guarded", Map.of());
    var stored = client.secrets().inNamespace("default").withName("guarded").get();
    String path = "/api/v1/namespaces/default/secrets/guarded";

    Answer wrongUid =
        send(
            "DELETE",
            path,
            "application/json",
            "{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\",\"preconditions\":{\"uid\":\"not-it\"}}");
    assertThat(wrongUid.code()).isEqualTo(409);
    assertThat(wrongUid.body().path("reason").asText()).isEqualTo("Conflict");
    assertThat(wrongUid.body().path("message").asText())
        .contains("Precondition failed: UID in precondition: not-it");

    Answer staleVersion =
        send("DELETE", path, "application/json", "{\"preconditions\":{\"resourceVersion\":\"1\"}}");
    assertThat(staleVersion.code()).isEqualTo(409);
    assertThat(client.secrets().inNamespace("default").withName("guarded").get()).isNotNull();

    Answer matching =
        send(
            "DELETE",
            path,
            "application/json",
            "{\"preconditions\":{\"uid\":\""
                + stored.getMetadata().getUid()
                + "\",\"resourceVersion\":\""
                + stored.getMetadata().getResourceVersion()
                + "\"}}");
    assertThat(matching.code()).isEqualTo(200);
    assertThat(client.secrets().inNamespace("default").withName("guarded").get()).isNull();

    // The Fabric8 client sends the precondition with lockResourceVersion.
    secret("locked", Map.of());
    var locked = client.secrets().inNamespace("default").withName("locked").get();
    client
        .secrets()
        .inNamespace("default")
        .withName("locked")
        .edit(
            x -> {
              x.getMetadata().setLabels(Map.of("changed", "yes"));
              return x;
            });
    org.assertj.core.api.Assertions.assertThatThrownBy(
            () -> client.resource(locked).lockResourceVersion().delete())
        .isInstanceOf(io.fabric8.kubernetes.client.KubernetesClientException.class)
        .hasMessageContaining("Precondition failed: ResourceVersion in precondition");
    assertThat(client.secrets().inNamespace("default").withName("locked").get()).isNotNull();
  }

  @Test
  @DisplayName(
      "A JSON merge patch that sets a key to null removes it, on a built-in and a custom resource,"
          + " and replaces lists instead of appending to them")
  void mergePatchRemovesNulls() throws Exception {
    secret("merged", Map.of("keep", "yes", "drop", "yes"));
    Answer patched =
        send(
            "PATCH",
            "/api/v1/namespaces/default/secrets/merged",
            "application/merge-patch+json",
            "{\"metadata\":{\"labels\":{\"drop\":null}}}");
    assertThat(patched.code()).isBetween(200, 202);
    assertThat(
            client
                .secrets()
                .inNamespace("default")
                .withName("merged")
                .get()
                .getMetadata()
                .getLabels())
        .containsOnlyKeys("keep");

    TerraformState state = new TerraformState();
    state.getMetadata().setName("merged");
    state.getMetadata().setLabels(Map.of("team", "infra"));
    client.resource(state).inNamespace("default").create();
    send(
        "PATCH",
        "/apis/leasehold.io/v1alpha1/namespaces/default/terraformstates/merged",
        "application/merge-patch+json",
        "{\"metadata\":{\"labels\":{\"team\":null},\"finalizers\":[\"a\",\"b\"]}}");
    send(
        "PATCH",
        "/apis/leasehold.io/v1alpha1/namespaces/default/terraformstates/merged",
        "application/merge-patch+json",
        "{\"metadata\":{\"finalizers\":[\"b\"]}}");
    TerraformState after =
        client.resources(TerraformState.class).inNamespace("default").withName("merged").get();
    assertThat(after.getMetadata().getLabels()).doesNotContainKey("team");
    assertThat(after.getMetadata().getFinalizers()).containsExactly("b");
    after.getMetadata().setFinalizers(null);
    client.resource(after).update();
  }

  private static MockResponse dispatch(
      ApiServerDispatcher dispatcher, String method, String path, String contentType, String body) {
    return dispatcher.dispatch(
        new RecordedRequest(
            "HTTP/1.1",
            HttpMethod.valueOf(method),
            path,
            Headers.builder().add("Content-Type", contentType).build(),
            new Buffer(body.getBytes(StandardCharsets.UTF_8))));
  }

  @Test
  @DisplayName(
      "Merge patches that reach the API at the same moment, each adding a label to an object that"
          + " has none, all land: each is applied to the version it was computed from")
  void concurrentMergePatchesAllLand() throws Exception {
    ApiServerDispatcher dispatcher =
        new ApiServerDispatcher(
            new HashMap<>(), Serialization.jsonMapper(), new CustomResourceValidation());
    // A bare dispatcher holds no namespace; objects are created in one that exists.
    assertThat(
            dispatch(
                    dispatcher,
                    "POST",
                    "/api/v1/namespaces",
                    "application/json",
                    "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"default\"}}")
                .code())
        .isEqualTo(201);
    int writers = 8;
    ExecutorService pool = Executors.newFixedThreadPool(writers);
    try {
      for (int round = 0; round < 20; round++) {
        String path = "/api/v1/namespaces/default/configmaps";
        String name = "concurrent-" + round;
        assertThat(
                dispatch(
                        dispatcher,
                        "POST",
                        path,
                        "application/json",
                        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\""
                            + name
                            + "\"}}")
                    .code())
            .isEqualTo(201);
        CyclicBarrier start = new CyclicBarrier(writers);
        List<Future<Integer>> codes = new ArrayList<>();
        for (int i = 0; i < writers; i++) {
          String label = "writer-" + i;
          codes.add(
              pool.submit(
                  () -> {
                    start.await();
                    return dispatch(
                            dispatcher,
                            "PATCH",
                            path + "/" + name,
                            "application/merge-patch+json",
                            "{\"metadata\":{\"labels\":{\"" + label + "\":\"x\"}}}")
                        .code();
                  }));
        }
        for (var code : codes) {
          assertThat(code.get()).isBetween(200, 202);
        }
        JsonNode stored =
            JSON.readTree(
                dispatch(dispatcher, "GET", path + "/" + name, "application/json", "")
                    .getBody()
                    .getBytes());
        assertThat(stored.path("metadata").path("labels").size())
            .as("labels after round %d: %s", round, stored.path("metadata").path("labels"))
            .isEqualTo(writers);
      }
    } finally {
      pool.shutdownNow();
      dispatcher.shutdown();
    }
  }

  @Test
  @DisplayName(
      "A strategic merge patch merges containers by name, deletes one marked $patch: delete, and"
          + " merges finalizers as a set; on a custom resource it is refused, naming merge patch")
  void strategicMergePatch() throws Exception {
    // A CronJob's pod template may change (a Job's may not, on any API server).
    CronJob cronJob =
        new CronJobBuilder()
            .withNewMetadata()
            .withName("strategic")
            .addToFinalizers("one")
            .endMetadata()
            .withNewSpec()
            .withSchedule("*/5 * * * *")
            .withSuspend(true)
            .withNewJobTemplate()
            .withNewSpec()
            .withNewTemplate()
            .withNewSpec()
            .addNewContainer()
            .withName("a")
            .withImage("a:1")
            .endContainer()
            .addNewContainer()
            .withName("b")
            .withImage("b:1")
            .endContainer()
            .addNewContainer()
            .withName("c")
            .withImage("c:1")
            .endContainer()
            .withRestartPolicy("Never")
            .endSpec()
            .endTemplate()
            .endSpec()
            .endJobTemplate()
            .endSpec()
            .build();
    client.batch().v1().cronjobs().inNamespace("default").resource(cronJob).create();
    Answer patched =
        send(
            "PATCH",
            "/apis/batch/v1/namespaces/default/cronjobs/strategic",
            "application/strategic-merge-patch+json",
            """
            {"metadata":{"finalizers":["two","one"]},
             "spec":{"jobTemplate":{"spec":{"template":{"spec":{
               "$setElementOrder/containers":[{"name":"a"},{"name":"c"}],
               "containers":[{"name":"a","image":"a:2"},{"name":"b","$patch":"delete"}]}}}}}}""");
    assertThat(patched.code()).as(patched.body().toString()).isBetween(200, 202);
    CronJob after =
        client.batch().v1().cronjobs().inNamespace("default").withName("strategic").get();
    assertThat(after.getSpec().getJobTemplate().getSpec().getTemplate().getSpec().getContainers())
        .extracting(c -> c.getName() + "=" + c.getImage())
        .containsExactly("a=a:2", "c=c:1");
    assertThat(after.getMetadata().getFinalizers()).containsExactlyInAnyOrder("one", "two");

    TerraformState state = new TerraformState();
    state.getMetadata().setName("strategic");
    client.resource(state).inNamespace("default").create();
    Answer refused =
        send(
            "PATCH",
            "/apis/leasehold.io/v1alpha1/namespaces/default/terraformstates/strategic",
            "application/strategic-merge-patch+json",
            "{\"metadata\":{\"labels\":{\"a\":\"b\"}}}");
    assertThat(refused.code()).isEqualTo(415);
    assertThat(refused.body().path("message").asText()).contains("--type=merge");
  }

  @Test
  @DisplayName(
      "generateName gives the prefix and five random lowercase letters and digits, a new name each"
          + " time")
  void generateName() {
    Set<String> names = new HashSet<>();
    for (int i = 0; i < 30; i++) {
      String name =
          client
              .configMaps()
              .inNamespace("default")
              .resource(
                  new ConfigMapBuilder()
                      .withNewMetadata()
                      .withGenerateName("run-")
                      .endMetadata()
                      .build())
              .create()
              .getMetadata()
              .getName();
      assertThat(name).matches("run-[bcdfghjklmnpqrstvwxz2456789]{5}");
      names.add(name);
    }
    assertThat(names).hasSize(30);
  }

  @Test
  @DisplayName(
      "A field selector on any field (involvedObject.name, type) filters lists, as kubectl"
          + " describe needs for Events; lists are typed <Kind>List")
  void fieldSelectors() throws Exception {
    for (String[] e :
        new String[][] {
          {"e1", "job-a", "Normal"}, {"e2", "job-b", "Normal"}, {"e3", "job-a", "Warning"}
        }) {
      client
          .v1()
          .events()
          .inNamespace("default")
          .resource(
              new EventBuilder()
                  .withNewMetadata()
                  .withName(e[0])
                  .endMetadata()
                  .withInvolvedObject(
                      new ObjectReferenceBuilder()
                          .withKind("Job")
                          .withName(e[1])
                          .withNamespace("default")
                          .build())
                  .withType(e[2])
                  .withReason("Test")
                  .build())
          .create();
    }
    Answer list =
        get(
            "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Djob-a%2Ctype%21%3DWarning",
            "application/json");
    Answer all = get("/api/v1/namespaces/default/events", "application/json");
    assertThat(all.body().path("kind").asText()).isEqualTo("EventList");
    assertThat(all.body().path("metadata").path("resourceVersion").asText()).isNotEmpty();
    assertThat(all.body().path("items").size()).isGreaterThanOrEqualTo(3);
    assertThat(list.body().path("kind").asText()).isEqualTo("EventList");
    assertThat(list.body().path("apiVersion").asText()).isEqualTo("v1");
    assertThat(list.body().path("items")).hasSize(1);
    assertThat(list.body().path("items").get(0).path("metadata").path("name").asText())
        .isEqualTo("e1");
    assertThat(
            client
                .v1()
                .events()
                .inNamespace("default")
                .withField("involvedObject.name", "job-b")
                .list()
                .getItems())
        .extracting(ev -> ev.getMetadata().getName())
        .containsExactly("e2");
  }

  @Test
  @DisplayName(
      "A Table request gets the columns a Kubernetes API server prints (Type and Data for"
          + " Secrets, the CRD's printer columns for TerraformStates), and rows without objects"
          + " when includeObject=None")
  void tables() throws Exception {
    secret("tabled", Map.of());
    Answer table =
        get(
            "/api/v1/namespaces/default/secrets?includeObject=None",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json");
    assertThat(table.contentType()).contains("as=Table");
    assertThat(table.body().path("kind").asText()).isEqualTo("Table");
    assertThat(table.body().path("columnDefinitions"))
        .extracting(c -> c.path("name").asText())
        .containsExactly("Name", "Type", "Data", "Age");
    JsonNode row = null;
    for (JsonNode r : table.body().path("rows")) {
      if ("tabled".equals(r.path("cells").get(0).asText())) {
        row = r;
      }
    }
    assertThat(row).isNotNull();
    assertThat(row.path("cells").get(1).asText()).isEqualTo("Opaque");
    assertThat(row.path("cells").get(2).asInt()).isEqualTo(1);
    assertThat(row.has("object")).isFalse();

    TerraformState state = new TerraformState();
    state.getMetadata().setName("tabled");
    client.resource(state).inNamespace("default").create();
    Answer custom =
        get(
            "/apis/leasehold.io/v1alpha1/namespaces/default/terraformstates/tabled",
            "application/json;as=Table;v=v1;g=meta.k8s.io");
    assertThat(custom.body().path("columnDefinitions"))
        .extracting(c -> c.path("name").asText())
        .containsExactly(
            "Name",
            "WORKSPACE",
            "HOLDER",
            "HOLDERS",
            "QUEUED",
            "HELD",
            "SERIAL",
            "RESOURCES",
            "READY",
            "AGE");
    assertThat(custom.body().path("rows").get(0).path("cells").get(1).asText())
        .isEqualTo("default");
    assertThat(custom.body().path("rows").get(0).path("object").path("kind").asText())
        .isEqualTo("PartialObjectMetadata");
  }

  @Test
  @DisplayName(
      "Discovery is served in the aggregated form when asked for, and in the classic form"
          + " otherwise, with TerraformStates, their short names and status subresource")
  void discovery() throws Exception {
    Answer aggregated =
        get(
            "/apis",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json");
    assertThat(aggregated.contentType()).contains("as=APIGroupDiscoveryList");
    JsonNode leasehold = null;
    for (JsonNode g : aggregated.body().path("items")) {
      if ("leasehold.io".equals(g.path("metadata").path("name").asText())) {
        leasehold = g;
      }
    }
    assertThat(leasehold).isNotNull();
    JsonNode resource = leasehold.path("versions").get(0).path("resources").get(0);
    assertThat(resource.path("resource").asText()).isEqualTo("terraformstates");
    assertThat(resource.path("shortNames"))
        .extracting(JsonNode::asText)
        .containsExactly("tfstate", "tfs");
    assertThat(resource.path("subresources").get(0).path("subresource").asText())
        .isEqualTo("status");

    Answer classic = get("/apis/leasehold.io/v1alpha1", "application/json");
    assertThat(classic.body().path("kind").asText()).isEqualTo("APIResourceList");
    assertThat(classic.body().path("resources"))
        .extracting(r -> r.path("name").asText())
        .containsExactly("terraformstates", "terraformstates/status");
    assertThat(get("/api", "application/json").body().path("versions").get(0).asText())
        .isEqualTo("v1");
    assertThat(get("/version", "application/json").body().path("gitVersion").asText())
        .startsWith("v1.32.");
    Answer openapi = get("/openapi/v3/apis/leasehold.io/v1alpha1", "application/json");
    assertThat(openapi.body().path("components").path("schemas").toString())
        .contains("leasehold.io")
        .contains("leaseDurationSeconds");
  }

  @Test
  @DisplayName(
      "A watch over HTTP from a listed version on one name is told of a deletion made between the"
          + " list and the watch, as kubectl delete and kubectl wait --for=delete need")
  void httpWatchSeesDeletionBetweenListAndWatch() throws Exception {
    client
        .configMaps()
        .inNamespace("default")
        .resource(
            new ConfigMapBuilder()
                .withNewMetadata()
                .withName("raced")
                .addToFinalizers("example.com/hold")
                .endMetadata()
                .build())
        .create();
    String collection = "/api/v1/namespaces/default/configmaps";
    Answer listed = get(collection + "?fieldSelector=metadata.name%3Draced", "application/json");
    assertThat(listed.body().path("items")).hasSize(1);
    String version = listed.body().path("metadata").path("resourceVersion").asText();

    client.configMaps().inNamespace("default").withName("raced").delete();
    send(
        "PATCH",
        collection + "/raced",
        "application/merge-patch+json",
        "{\"metadata\":{\"finalizers\":null}}");
    assertThat(client.configMaps().inNamespace("default").withName("raced").get()).isNull();

    HttpResponse<Stream<String>> watch =
        HTTP.send(
            HttpRequest.newBuilder(
                    URI.create(
                        api.url()
                            + collection
                            + "?watch=true&fieldSelector=metadata.name%3Draced&resourceVersion="
                            + version))
                .build(),
            HttpResponse.BodyHandlers.ofLines());
    assertThat(watch.statusCode()).isEqualTo(200);
    CompletableFuture<String> first =
        CompletableFuture.supplyAsync(() -> watch.body().findFirst().orElse(""));
    JsonNode event = JSON.readTree(first.get(10, TimeUnit.SECONDS));
    assertThat(event.path("type").asText()).isEqualTo("DELETED");
    assertThat(event.path("object").path("metadata").path("name").asText()).isEqualTo("raced");
    watch.body().close();
  }

  @Test
  @DisplayName(
      "A CRD changed by a merge patch (kubectl apply of a new CRD) is validated against from then"
          + " on")
  void patchedCrdSchemaApplies() throws Exception {
    try (EmbeddedKubernetes own = EmbeddedKubernetes.start(0);
        KubernetesClient ownClient = own.newClient()) {
      String crdPath =
          "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/terraformstates.leasehold.io";
      HttpResponse<String> crd =
          HTTP.send(
              HttpRequest.newBuilder(URI.create(own.url() + crdPath)).build(),
              HttpResponse.BodyHandlers.ofString());
      ObjectNode spec = (ObjectNode) JSON.readTree(crd.body()).path("spec");
      ObjectNode keep =
          (ObjectNode)
              spec.path("versions")
                  .get(0)
                  .path("schema")
                  .path("openAPIV3Schema")
                  .path("properties")
                  .path("spec")
                  .path("properties")
                  .path("history")
                  .path("properties")
                  .path("keep");
      keep.put("maximum", 5);
      HttpResponse<String> patched =
          HTTP.send(
              HttpRequest.newBuilder(URI.create(own.url() + crdPath))
                  .method(
                      "PATCH",
                      HttpRequest.BodyPublishers.ofString(
                          "{\"spec\":{\"versions\":" + spec.path("versions") + "}}"))
                  .header("Content-Type", "application/merge-patch+json")
                  .build(),
              HttpResponse.BodyHandlers.ofString());
      assertThat(patched.statusCode()).as(patched.body()).isBetween(200, 202);

      TerraformState state = new TerraformState();
      state.getMetadata().setName("keeps-too-many");
      state.setSpec(new io.leasehold.api.TerraformStateSpec());
      state.getSpec().setHistory(new io.leasehold.api.HistorySpec());
      state.getSpec().getHistory().setKeep(50);
      org.assertj.core.api.Assertions.assertThatThrownBy(
              () -> ownClient.resource(state).inNamespace("default").create())
          .hasMessageContaining("spec.history.keep");
    }
  }

  @Test
  @DisplayName(
      "A missing object is answered with a Status that names it, and a path that is no API path"
          + " with 404, not with the objects the store holds")
  void notFoundNamesTheObject() throws Exception {
    Answer missing = get("/apis/batch/v1/namespaces/default/jobs/nowhere", "application/json");
    assertThat(missing.code()).isEqualTo(404);
    assertThat(missing.body().path("message").asText())
        .isEqualTo("jobs.batch \"nowhere\" not found");
    secret("not-listed", Map.of());
    Answer elsewhere = get("/metrics", "application/json");
    assertThat(elsewhere.code()).isEqualTo(404);
    assertThat(elsewhere.body().toString()).doesNotContain("not-listed");
    HttpResponse<String> health =
        HTTP.send(
            HttpRequest.newBuilder(URI.create(api.url() + "/readyz")).build(),
            HttpResponse.BodyHandlers.ofString());
    assertThat(health.statusCode()).isEqualTo(200);
    assertThat(health.body()).isEqualTo("ok");
    Answer logs = get("/api/v1/namespaces/default/pods/some-pod/log", "application/json");
    assertThat(logs.code()).isEqualTo(400);
    assertThat(logs.body().toString()).doesNotContain("not-listed").contains("runs no containers");
    Answer eviction = get("/api/v1/namespaces/default/pods/some-pod/eviction", "application/json");
    assertThat(eviction.code()).isEqualTo(404);
    assertThat(eviction.body().toString()).doesNotContain("not-listed");
  }

  @Test
  @DisplayName(
      "Deleting an owner with propagationPolicy Orphan leaves its dependents without the owner"
          + " reference; with Background they are deleted")
  void propagation() throws Exception {
    for (String policy : new String[] {"Orphan", "Background"}) {
      String owner = "owner-" + policy.toLowerCase();
      var created =
          client
              .configMaps()
              .inNamespace("default")
              .resource(
                  new ConfigMapBuilder().withNewMetadata().withName(owner).endMetadata().build())
              .create();
      client
          .configMaps()
          .inNamespace("default")
          .resource(
              new ConfigMapBuilder()
                  .withNewMetadata()
                  .withName(owner + "-dependent")
                  .addNewOwnerReference()
                  .withApiVersion("v1")
                  .withKind("ConfigMap")
                  .withName(owner)
                  .withUid(created.getMetadata().getUid())
                  .endOwnerReference()
                  .endMetadata()
                  .build())
          .create();
      send(
          "DELETE",
          "/api/v1/namespaces/default/configmaps/" + owner,
          "application/json",
          "{\"propagationPolicy\":\"" + policy + "\"}");
      var dependent =
          client.configMaps().inNamespace("default").withName(owner + "-dependent").get();
      if (policy.equals("Orphan")) {
        assertThat(dependent).isNotNull();
        assertThat(dependent.getMetadata().getOwnerReferences()).isNullOrEmpty();
      } else {
        assertThat(dependent).isNull();
      }
    }
  }

  @ParameterizedTest
  @CsvSource({
    "0,0s",
    "119,119s",
    "150,2m30s",
    "600,10m",
    "7200,120m",
    "12000,3h20m",
    "90000,25h",
    "200000,2d7h",
    "864000,10d",
    "63072000,2y"
  })
  @DisplayName("Ages print as kubectl prints them")
  void ages(long seconds, String printed) {
    assertThat(Tables.humanDuration(Duration.ofSeconds(seconds))).isEqualTo(printed);
  }
}
