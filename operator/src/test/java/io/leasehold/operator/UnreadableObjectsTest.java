package io.leasehold.operator;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.GenericKubernetesResourceList;
import io.fabric8.kubernetes.api.model.apiextensions.v1.CustomResourceDefinition;
import io.fabric8.kubernetes.client.dsl.NonNamespaceOperation;
import io.fabric8.kubernetes.client.dsl.Resource;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.leasehold.embedded.UncheckedStore;
import io.leasehold.lock.LockInfo;
import io.leasehold.queue.RunnerJobs;
import io.leasehold.state.StateNames;
import io.leasehold.support.BackendHttp;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.RunnerJobFixtures;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * The operator never stops on an object it cannot fully read: fields it does not know are kept, and
 * an object with a value of the wrong type is left alone, said so on itself, while everything else
 * goes on.
 *
 * <p>The TerraformStates here are stored under a CRD whose spec and status keep whatever they are
 * given ({@code x-kubernetes-preserve-unknown-fields}), as a newer CRD declaring more fields, or
 * other types, would: an API server keeps such fields whether or not it prunes undeclared ones, so
 * these tests hold on any API server. Jobs and Leases with a value of the wrong type are refused by
 * an API server, the embedded one included (each such write is asserted refused): they are put in
 * the embedded API's store as they are ({@link UncheckedStore}), where the operator's informers
 * hear of them as of any write.
 */
class UnreadableObjectsTest {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Duration WAIT = Duration.ofSeconds(30);

  /** A value no status, Event or reply may ever show. */
  private static final String SECRET = "value-that-must-not-show";

  private static OperatorHarness harness;
  private static BackendHttp backend;

  @BeforeAll
  static void start() throws Exception {
    harness = OperatorHarness.start();
    backend = new BackendHttp(harness.startBackend(64L * 1024 * 1024));
    var crds = harness.client().apiextensions().v1().customResourceDefinitions();
    CustomResourceDefinition crd = crds.withName("terraformstates.leasehold.io").get();
    ObjectNode tree = JSON.valueToTree(crd);
    ObjectNode schema = (ObjectNode) tree.at("/spec/versions/0/schema/openAPIV3Schema");
    schema.remove("x-kubernetes-validations");
    schema.put("x-kubernetes-preserve-unknown-fields", true);
    ObjectNode properties = (ObjectNode) schema.get("properties");
    properties.set("spec", JSON.createObjectNode().put("type", "object").put(PRESERVE, true));
    properties.set("status", JSON.createObjectNode().put(PRESERVE, true));
    crds.resource(JSON.treeToValue(tree, CustomResourceDefinition.class)).update();
  }

  private static final String PRESERVE = "x-kubernetes-preserve-unknown-fields";

  @AfterAll
  static void stop() {
    harness.close();
  }

  /** TerraformStates as stored, read without binding them to leasehold's classes. */
  private static NonNamespaceOperation<
          GenericKubernetesResource,
          GenericKubernetesResourceList,
          Resource<GenericKubernetesResource>>
      states() {
    return harness
        .client()
        .genericKubernetesResources("leasehold.io/v1alpha1", "TerraformState")
        .inNamespace(NAMESPACE);
  }

  private static JsonNode stored(String name) {
    GenericKubernetesResource r = states().withName(name).get();
    return r == null ? JSON.missingNode() : JSON.valueToTree(r);
  }

  private static void create(String json) {
    states()
        .resource(
            harness
                .client()
                .getKubernetesSerialization()
                .unmarshal(json, GenericKubernetesResource.class))
        .create();
  }

  private static String state(String name, String spec) {
    return "{\"apiVersion\":\"leasehold.io/v1alpha1\",\"kind\":\"TerraformState\","
        + "\"metadata\":{\"name\":\""
        + name
        + "\"},\"spec\":"
        + spec
        + "}";
  }

  private static void mergePatch(String name, String patch) {
    states().withName(name).patch(PatchContext.of(PatchType.JSON_MERGE), patch);
  }

  private static void mergePatchStatus(String name, String patch) {
    states()
        .withName(name)
        .subresource("status")
        .patch(PatchContext.of(PatchType.JSON_MERGE), patch);
  }

  /** A condition as "Status/Reason", from the object as stored. */
  private static String condition(String name, String type) {
    for (JsonNode c : stored(name).at("/status/conditions")) {
      if (type.equals(c.path("type").asText())) {
        return c.path("status").asText() + "/" + c.path("reason").asText();
      }
    }
    return null;
  }

  private static String message(String name, String type) {
    for (JsonNode c : stored(name).at("/status/conditions")) {
      if (type.equals(c.path("type").asText())) {
        return c.path("message").asText();
      }
    }
    return null;
  }

  private static List<String> everythingSaidAbout(String name) {
    List<String> said = new ArrayList<>(harness.events(name));
    said.add(stored(name).path("status").toString());
    return said;
  }

  @Test
  @DisplayName(
      "When a TerraformState carries fields this version does not know (at the top, in spec, in a"
          + " nested spec object and in status), then it is reconciled as usual, its lock works,"
          + " and every one of those fields is still there after the operator's own writes")
  void unknownFieldsAreIgnoredAndKept() {
    create(
        "{\"apiVersion\":\"leasehold.io/v1alpha1\",\"kind\":\"TerraformState\","
            + "\"metadata\":{\"name\":\"newer\"},\"extra\":{\"a\":1},"
            + "\"spec\":{\"workspace\":\"default\",\"foo\":\"bar\","
            + "\"lock\":{\"leaseDurationSeconds\":60,\"renewEvery\":20},"
            + "\"history\":{\"keep\":3,\"compress\":{\"level\":9}}}}");
    await().atMost(WAIT).until(() -> "False/AsExpected".equals(condition("newer", "Degraded")));
    mergePatchStatus("newer", "{\"status\":{\"future\":{\"x\":true}}}");

    // A lock taken through the backend: the operator writes the status again.
    LockInfo lock = BackendHttp.lockInfo("0b1e6f2a-1111-4c3d-8e9f-000000000001", "ann@laptop");
    assertThat(backend.lock(NAMESPACE + "/newer", lock, null).status()).isEqualTo(200);
    await().atMost(WAIT).until(() -> "True/Held".equals(condition("newer", "Locked")));

    JsonNode stored = stored("newer");
    assertThat(condition("newer", "Ready")).startsWith("True/");
    assertThat(stored.at("/extra/a").asInt()).isEqualTo(1);
    assertThat(stored.at("/spec/foo").asText()).isEqualTo("bar");
    assertThat(stored.at("/spec/lock/renewEvery").asInt()).isEqualTo(20);
    assertThat(stored.at("/spec/history/compress/level").asInt()).isEqualTo(9);
    assertThat(stored.at("/status/future/x").asBoolean()).isTrue();
    assertThat(stored.at("/metadata/finalizers")).isNotEmpty();
    assertThat(backend.unlock(NAMESPACE + "/newer", lock).status()).isEqualTo(200);
  }

  @Test
  @DisplayName(
      "When fields of a TerraformState hold values of the wrong type, then that TerraformState"
          + " alone is Ready=False with FieldUnreadable naming the field (never its value) and gets"
          + " a Warning, its lock stays held, the backend refuses it, while another state's lock"
          + " and runner Jobs go on; corrected, it is reconciled as before")
  void wrongTypedFieldsStopOnlyThatState() {
    create(state("steady", "{\"workspace\":\"default\"}"));
    create(state("fragile", "{\"workspace\":\"default\",\"lock\":{\"leaseDurationSeconds\":60}}"));
    LockInfo held = BackendHttp.lockInfo("0b1e6f2a-2222-4c3d-8e9f-000000000002", "bo@laptop");
    assertThat(backend.lock(NAMESPACE + "/fragile", held, null).status()).isEqualTo(200);
    await().atMost(WAIT).until(() -> "True/Held".equals(condition("fragile", "Locked")));
    await().atMost(WAIT).until(() -> "False/AsExpected".equals(condition("steady", "Degraded")));
    StateNames fragile = new StateNames(NAMESPACE, "fragile", "default");
    String leaseVersion =
        harness
            .client()
            .leases()
            .inNamespace(NAMESPACE)
            .withName(fragile.leaseName())
            .get()
            .getMetadata()
            .getResourceVersion();

    mergePatch("fragile", "{\"spec\":{\"lock\":{\"leaseDurationSeconds\":\"" + SECRET + "\"}}}");

    await().atMost(WAIT).until(() -> "False/FieldUnreadable".equals(condition("fragile", "Ready")));
    assertThat(message("fragile", "Ready"))
        .contains("spec.lock.leaseDurationSeconds cannot be read: it should be an integer");
    await()
        .atMost(WAIT)
        .until(
            () ->
                harness.events("fragile").stream()
                    .anyMatch(
                        e ->
                            e.startsWith("Warning FieldUnreadable:")
                                && e.contains("spec.lock.leaseDurationSeconds")));
    assertThat(condition("fragile", "Locked")).isEqualTo("True/Held");
    BackendHttp.Answer refused = backend.get(NAMESPACE + "/fragile");
    assertThat(refused.status()).isEqualTo(422);
    assertThat(refused.body()).contains("spec.lock.leaseDurationSeconds").doesNotContain(SECRET);

    // Meanwhile another state is locked, and its runner Job admitted, as usual.
    LockInfo other = BackendHttp.lockInfo("0b1e6f2a-3333-4c3d-8e9f-000000000003", "cy@laptop");
    assertThat(backend.lock(NAMESPACE + "/steady", other, null).status()).isEqualTo(200);
    assertThat(backend.unlock(NAMESPACE + "/steady", other).status()).isEqualTo(200);
    RunnerJobFixtures.create(harness.client(), "steady-run", "steady");
    await()
        .atMost(WAIT)
        .until(
            () -> RunnerJobFixtures.running(RunnerJobFixtures.get(harness.client(), "steady-run")));

    // Another field, deeper in another part of the spec.
    mergePatch(
        "fragile",
        "{\"spec\":{\"lock\":{\"leaseDurationSeconds\":60},"
            + "\"history\":{\"keep\":{\"n\":\""
            + SECRET
            + "\"}}}}");
    await()
        .atMost(WAIT)
        .until(
            () ->
                message("fragile", "Ready") != null
                    && message("fragile", "Ready")
                        .contains("spec.history.keep cannot be read: it should be an integer"));

    mergePatch("fragile", "{\"spec\":{\"history\":{\"keep\":4}}}");
    await().atMost(WAIT).until(() -> "False/AsExpected".equals(condition("fragile", "Degraded")));
    assertThat(condition("fragile", "Ready")).startsWith("True/");
    assertThat(condition("fragile", "Locked")).isEqualTo("True/Held");
    assertThat(
            harness
                .client()
                .leases()
                .inNamespace(NAMESPACE)
                .withName(fragile.leaseName())
                .get()
                .getSpec()
                .getHolderIdentity())
        .isEqualTo(held.id());
    assertThat(leaseVersion).isNotNull();
    assertThat(harness.events("fragile")).noneMatch(e -> e.contains("LockReleased"));
    assertThat(everythingSaidAbout("fragile")).noneMatch(s -> s.contains(SECRET));
    assertThat(backend.unlock(NAMESPACE + "/fragile", held).status()).isEqualTo(200);
    RunnerJobFixtures.finish(harness.client(), "steady-run", true);
  }

  @Test
  @DisplayName(
      "When a TerraformState's status is not an object, then it gets a Warning saying status"
          + " cannot be read and the operator writes its status anew, the lock as it is, without"
          + " telling again what it told before")
  void statusThatIsNotAnObjectIsWrittenAnew() {
    create(state("scrawled", "{\"workspace\":\"default\"}"));
    LockInfo held = BackendHttp.lockInfo("0b1e6f2a-5555-4c3d-8e9f-000000000005", "flo@laptop");
    assertThat(backend.lock(NAMESPACE + "/scrawled", held, null).status()).isEqualTo(200);
    await().atMost(WAIT).until(() -> "True/Held".equals(condition("scrawled", "Locked")));

    mergePatchStatus("scrawled", "{\"status\":\"" + SECRET + "\"}");

    await()
        .atMost(WAIT)
        .until(
            () ->
                harness.events("scrawled").stream()
                    .anyMatch(
                        e ->
                            e.startsWith("Warning FieldUnreadable:")
                                && e.contains("status cannot be read: it should be an object")));
    await().atMost(WAIT).until(() -> "False/AsExpected".equals(condition("scrawled", "Degraded")));
    assertThat(stored("scrawled").path("status").isObject()).isTrue();
    assertThat(condition("scrawled", "Locked")).isEqualTo("True/Held");
    assertThat(harness.events("scrawled")).filteredOn(e -> e.contains("LockTaken")).hasSize(1);
    assertThat(everythingSaidAbout("scrawled")).noneMatch(s -> s.contains(SECRET));
    assertThat(backend.unlock(NAMESPACE + "/scrawled", held).status()).isEqualTo(200);
  }

  @Test
  @DisplayName(
      "When a runner Job or a lock Lease has a value of the wrong type, then the informers go on:"
          + " the Job gets a Warning and waits out of the line while the Job behind it is"
          + " admitted; the Lease's lock counts as held, untouched, until the Lease is corrected")
  void badJobsAndLeasesAreLeftAlone() throws Exception {
    create(state("queued", "{\"workspace\":\"default\"}"));
    await().atMost(WAIT).until(() -> "False/AsExpected".equals(condition("queued", "Degraded")));
    ObjectNode bad = JSON.valueToTree(RunnerJobFixtures.runner("queued-bad", "queued", true));
    ((ObjectNode) bad.get("spec")).put("parallelism", SECRET);
    String jobs = "/apis/batch/v1/namespaces/" + NAMESPACE + "/jobs";
    assertThat(rawWrite("POST", jobs, bad)).as("refused, as by a real API server").isEqualTo(400);
    assertThat(UncheckedStore.write(harness.api(), "POST", jobs, bad)).isEqualTo(201);
    RunnerJobFixtures.create(harness.client(), "queued-good", "queued");

    await()
        .atMost(WAIT)
        .until(
            () ->
                RunnerJobFixtures.running(RunnerJobFixtures.get(harness.client(), "queued-good")));
    await()
        .atMost(WAIT)
        .until(
            () ->
                harness.events("queued-bad").stream()
                    .anyMatch(
                        e ->
                            e.startsWith("Warning FieldUnreadable:")
                                && e.contains("spec.parallelism cannot be read")));
    assertThat(harness.events("queued-bad")).noneMatch(e -> e.contains(SECRET));
    JsonNode waiting = rawRead("/apis/batch/v1/namespaces/" + NAMESPACE + "/jobs/queued-bad");
    assertThat(waiting.at("/spec/suspend").asBoolean()).isTrue();
    assertThat(
            waiting
                .at("/metadata/annotations/" + RunnerJobs.ADMITTED_ANNOTATION.replace("/", "~1"))
                .isMissingNode())
        .isTrue();

    // The running Job's lock Lease, made unreadable: its lock counts as held and is not touched.
    StateNames queued = new StateNames(NAMESPACE, "queued", "default");
    String leasePath =
        "/apis/coordination.k8s.io/v1/namespaces/" + NAMESPACE + "/leases/" + queued.leaseName();
    ObjectNode lease = (ObjectNode) rawRead(leasePath);
    JsonNode duration = lease.at("/spec/leaseDurationSeconds");
    ((ObjectNode) lease.get("spec")).put("leaseDurationSeconds", SECRET);
    assertThat(rawWrite("PUT", leasePath, lease))
        .as("refused, as by a real API server")
        .isEqualTo(400);
    assertThat(UncheckedStore.write(harness.api(), "PUT", leasePath, lease)).isEqualTo(200);
    await().atMost(WAIT).until(() -> "True/FieldUnreadable".equals(condition("queued", "Locked")));
    await()
        .atMost(WAIT)
        .until(
            () ->
                harness.events(queued.leaseName()).stream()
                    .anyMatch(e -> e.contains("spec.leaseDurationSeconds cannot be read")));
    LockInfo other = BackendHttp.lockInfo("0b1e6f2a-4444-4c3d-8e9f-000000000004", "di@laptop");
    BackendHttp.Answer locked = backend.lock(NAMESPACE + "/queued", other, null);
    assertThat(locked.status()).isEqualTo(423);
    assertThat(locked.body()).doesNotContain(SECRET);
    assertThat(rawRead(leasePath).at("/spec/leaseDurationSeconds").asText()).isEqualTo(SECRET);

    ObjectNode fixed = (ObjectNode) rawRead(leasePath);
    ((ObjectNode) fixed.get("spec")).set("leaseDurationSeconds", duration);
    assertThat(rawWrite("PUT", leasePath, fixed)).isEqualTo(200);
    await().atMost(WAIT).until(() -> "True/Held".equals(condition("queued", "Locked")));
    assertThat(stored("queued").at("/status/runningJob").asText()).isEqualTo("queued-good");
    assertThat(everythingSaidAbout("queued")).noneMatch(s -> s.contains(SECRET));
    RunnerJobFixtures.finish(harness.client(), "queued-good", true);
  }

  private static JsonNode rawRead(String path) throws Exception {
    return JSON.readTree(harness.client().raw(harness.api().url() + path));
  }

  private static int rawWrite(String method, String path, JsonNode body) throws Exception {
    var request =
        java.net.http.HttpRequest.newBuilder(java.net.URI.create(harness.api().url() + path))
            .header("Content-Type", "application/json")
            .method(method, java.net.http.HttpRequest.BodyPublishers.ofString(body.toString()))
            .build();
    return java.net.http.HttpClient.newHttpClient()
        .send(request, java.net.http.HttpResponse.BodyHandlers.discarding())
        .statusCode();
  }
}
