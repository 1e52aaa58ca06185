package io.leasehold.embedded;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.leasehold.api.TerraformState;
import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The CRD's schema and CEL rules, enforced by the embedded API as a real API server would. */
class CustomResourceValidationTest {

  private static EmbeddedKubernetes api;
  private static KubernetesClient client;

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

  private static String manifest(String name, String spec) {
    return """
        apiVersion: leasehold.io/v1alpha1
        kind: TerraformState
        metadata:
          name: %s
        spec:
        %s
        """
        .formatted(name, spec.indent(2));
  }

  private static void apply(String yaml) {
    api.apply(new ByteArrayInputStream(yaml.getBytes(StandardCharsets.UTF_8)), "test manifest");
  }

  @Test
  @DisplayName("When a TerraformState omits every field, then the schema defaults are filled in")
  void defaultsAreApplied() {
    apply(manifest("defaults", "{}"));

    TerraformState s =
        client.resources(TerraformState.class).inNamespace("default").withName("defaults").get();
    GenericKubernetesResource raw =
        client
            .genericKubernetesResources("leasehold.io/v1alpha1", "TerraformState")
            .inNamespace("default")
            .withName("defaults")
            .get();
    assertThat(raw.getAdditionalProperties().get("spec"))
        .isEqualTo(
            Map.of(
                "workspace",
                "default",
                "lock",
                Map.of("leaseDurationSeconds", 300, "releaseVanishedPods", true),
                "queue",
                Map.of("hold", false, "maxParallelPlans", 4, "skipRedundant", true),
                "history",
                Map.of("keep", 10),
                "encryption",
                Map.of("required", false),
                "deletionPolicy",
                "Retain"));
    assertThat(s.getSpec().getLock().getLeaseDurationSeconds()).isEqualTo(300);
  }

  @Test
  @DisplayName("A multi-document manifest is applied document by document, in any namespace")
  void appliesMultiDocumentManifests() {
    apply(
        """
        apiVersion: leasehold.io/v1alpha1
        kind: TerraformState
        metadata:
          name: multi-a
        ---
        apiVersion: v1
        kind: Namespace
        metadata:
          name: infra
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: multi-config
          namespace: infra
        data:
          key: value
        ---
        apiVersion: leasehold.io/v1alpha1
        kind: TerraformState
        metadata:
          name: multi-b
          namespace: infra
        spec:
          workspace: prod
        """);

    assertThat(
            client.resources(TerraformState.class).inNamespace("default").withName("multi-a").get())
        .isNotNull();
    assertThat(client.configMaps().inNamespace("infra").withName("multi-config").get().getData())
        .containsEntry("key", "value");
    assertThat(
            client
                .resources(TerraformState.class)
                .inNamespace("infra")
                .withName("multi-b")
                .get()
                .getSpec()
                .getWorkspace())
        .isEqualTo("prod");
  }

  @ParameterizedTest(name = "{0} is refused: {2}")
  @CsvSource(
      delimiter = '|',
      value = {
        "lease too short    | lock: {leaseDurationSeconds: 4}       | spec.lock.leaseDurationSeconds",
        "lease too long     | lock: {leaseDurationSeconds: 3601}    | spec.lock.leaseDurationSeconds",
        "negative history   | history: {keep: -1}                   | spec.history.keep",
        "history too long   | history: {keep: 101}                  | spec.history.keep",
        "unknown policy     | deletionPolicy: Destroy               | spec.deletionPolicy",
        "workspace upper    | workspace: Prod                       | workspace must be a DNS label",
        "workspace dot      | workspace: a.b                        | workspace must be a DNS label",
        "workspace empty    | workspace: ''                         | spec.workspace",
        "workspace too long | workspace: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa | spec.workspace",
        "lease not a number | lock: {leaseDurationSeconds: soon}    | spec.lock.leaseDurationSeconds",
      })
  void invalidSpecsAreRefused(String what, String spec, String expected) {
    assertThatThrownBy(() -> apply(manifest("bad-spec", spec)))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("TerraformState bad-spec refused")
        .hasMessageContaining(expected);
    assertThat(
            client
                .resources(TerraformState.class)
                .inNamespace("default")
                .withName("bad-spec")
                .get())
        .isNull();
  }

  @ParameterizedTest(name = "name {0} is refused")
  @CsvSource({
    "network-2, must not end in '-<digits>'",
    "123, must not end in '-<digits>'",
    "a-very-long-name-that-goes-on-and-on-past-the-label-limit-of-63-chars, at most 63 characters",
  })
  void invalidNamesAreRefused(String name, String expected) {
    assertThatThrownBy(() -> apply(manifest(name, "{}")))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining(expected);
  }

  @Test
  @DisplayName("When the workspace of an existing TerraformState is changed, then it is refused")
  void workspaceIsImmutable() {
    apply(manifest("fixed-ws", "workspace: staging"));

    assertThatThrownBy(
            () ->
                client
                    .resources(TerraformState.class)
                    .inNamespace("default")
                    .withName("fixed-ws")
                    .edit(
                        s -> {
                          s.getSpec().setWorkspace("prod");
                          return s;
                        }))
        .isInstanceOf(KubernetesClientException.class)
        .hasMessageContaining("workspace is immutable")
        // Said once, not once per rule.
        .satisfies(
            e ->
                assertThat(((KubernetesClientException) e).getStatus().getDetails().getCauses())
                    .filteredOn(c -> c.getMessage().contains("workspace is immutable"))
                    .hasSize(1));
    assertThat(
            client
                .resources(TerraformState.class)
                .inNamespace("default")
                .withName("fixed-ws")
                .get()
                .getSpec()
                .getWorkspace())
        .isEqualTo("staging");
  }

  @Test
  @DisplayName("When a valid TerraformState is changed without touching workspace, it is accepted")
  void otherFieldsMayChange() {
    apply(manifest("mutable", "workspace: staging"));

    client
        .resources(TerraformState.class)
        .inNamespace("default")
        .withName("mutable")
        .edit(
            s -> {
              s.getSpec().getHistory().setKeep(3);
              return s;
            });

    assertThat(
            client
                .resources(TerraformState.class)
                .inNamespace("default")
                .withName("mutable")
                .get()
                .getSpec()
                .getHistory()
                .getKeep())
        .isEqualTo(3);
  }

  private static String workspaceOf(String name) {
    GenericKubernetesResource raw =
        client
            .genericKubernetesResources("leasehold.io/v1alpha1", "TerraformState")
            .inNamespace("default")
            .withName(name)
            .get();
    Object spec = raw.getAdditionalProperties().get("spec");
    return spec instanceof Map<?, ?> m ? (String) m.get("workspace") : null;
  }

  @ParameterizedTest(name = "{0} is refused")
  @CsvSource(
      delimiter = '|',
      value = {
        "a JSON patch removing /spec/workspace | json  | [{\"op\":\"remove\",\"path\":\"/spec/workspace\"}]",
        "a JSON patch removing /spec           | json  | [{\"op\":\"remove\",\"path\":\"/spec\"}]",
        "a JSON patch setting /spec to null    | json  | [{\"op\":\"replace\",\"path\":\"/spec\",\"value\":null}]",
        "a merge patch setting spec to null    | merge | {\"spec\":null}",
        "a merge patch setting workspace null  | merge | {\"spec\":{\"workspace\":null}}",
        "a PUT without spec                    | put   | ''",
      })
  @DisplayName(
      "When spec or spec.workspace of a TerraformState is removed or nulled (JSON patch, merge"
          + " patch, PUT), then it is refused and the workspace stays as it was")
  void workspaceCannotBeRemoved(String what, String kind, String patch) {
    String name = "keep-ws-" + Integer.toHexString(what.hashCode()) + "-x";
    apply(manifest(name, "workspace: staging"));
    var resource = client.resources(TerraformState.class).inNamespace("default").withName(name);

    assertThatThrownBy(
            () -> {
              switch (kind) {
                case "json" ->
                    resource.patch(
                        io.fabric8.kubernetes.client.dsl.base.PatchContext.of(
                            io.fabric8.kubernetes.client.dsl.base.PatchType.JSON),
                        patch);
                case "merge" ->
                    resource.patch(
                        io.fabric8.kubernetes.client.dsl.base.PatchContext.of(
                            io.fabric8.kubernetes.client.dsl.base.PatchType.JSON_MERGE),
                        patch);
                default -> {
                  GenericKubernetesResource raw =
                      client
                          .genericKubernetesResources("leasehold.io/v1alpha1", "TerraformState")
                          .inNamespace("default")
                          .withName(name)
                          .get();
                  raw.getAdditionalProperties().remove("spec");
                  client
                      .genericKubernetesResources("leasehold.io/v1alpha1", "TerraformState")
                      .inNamespace("default")
                      .resource(raw)
                      .update();
                }
              }
            })
        .isInstanceOf(KubernetesClientException.class)
        .hasMessageContaining("workspace is immutable");
    assertThat(workspaceOf(name)).isEqualTo("staging");
  }

  @ParameterizedTest(name = "{0} changes the status only")
  @CsvSource(
      delimiter = '|',
      value = {
        "a PUT of status without spec           | put   | ",
        "a PUT of status with another workspace | put   | other",
        "a merge patch of status, spec null     | merge | {\"spec\":null,\"metadata\":{\"labels\":{\"x\":\"y\"}},\"status\":{\"queued\":3}}",
        "a JSON patch of status removing spec   | json  | [{\"op\":\"remove\",\"path\":\"/spec\"},{\"op\":\"add\",\"path\":\"/status\",\"value\":{\"queued\":3}}]",
      })
  @DisplayName(
      "When a write to the status subresource of a TerraformState carries another spec or"
          + " metadata (or none), as kubectl sends it, then only its status is stored, as an API"
          + " server stores it")
  void statusWritesLeaveSpecAlone(String what, String kind, String change) throws Exception {
    String name = "status-only-" + Integer.toHexString(what.hashCode()) + "-x";
    apply(manifest(name, "workspace: staging"));
    var generic =
        client
            .genericKubernetesResources("leasehold.io/v1alpha1", "TerraformState")
            .inNamespace("default");
    long generation = generic.withName(name).get().getMetadata().getGeneration();
    String body = change;
    String contentType =
        "json".equals(kind) ? "application/json-patch+json" : "application/merge-patch+json";
    if ("put".equals(kind)) {
      GenericKubernetesResource raw = generic.withName(name).get();
      if (change == null) {
        raw.getAdditionalProperties().remove("spec");
      } else {
        raw.getAdditionalProperties().put("spec", Map.of("workspace", change));
      }
      raw.getMetadata().setLabels(Map.of("x", "y"));
      raw.getAdditionalProperties().put("status", Map.of("queued", 3));
      body = new com.fasterxml.jackson.databind.ObjectMapper().writeValueAsString(raw);
      contentType = "application/json";
    }
    // As kubectl replace and kubectl patch --subresource=status send it: with a query.
    java.net.http.HttpResponse<String> answer =
        java.net.http.HttpClient.newHttpClient()
            .send(
                java.net.http.HttpRequest.newBuilder(
                        java.net.URI.create(
                            api.url()
                                + "/apis/leasehold.io/v1alpha1/namespaces/default/terraformstates/"
                                + name
                                + "/status?fieldManager=kubectl&fieldValidation=Strict"))
                    .method(
                        "put".equals(kind) ? "PUT" : "PATCH",
                        java.net.http.HttpRequest.BodyPublishers.ofString(body))
                    .header("Content-Type", contentType)
                    .build(),
                java.net.http.HttpResponse.BodyHandlers.ofString());
    assertThat(answer.statusCode() / 100).as(answer.body()).isEqualTo(2);

    GenericKubernetesResource stored = generic.withName(name).get();
    assertThat(workspaceOf(name)).isEqualTo("staging");
    assertThat(stored.getAdditionalProperties().get("spec"))
        .isEqualTo(
            Map.of(
                "workspace",
                "staging",
                "lock",
                Map.of("leaseDurationSeconds", 300, "releaseVanishedPods", true),
                "queue",
                Map.of("hold", false, "maxParallelPlans", 4, "skipRedundant", true),
                "history",
                Map.of("keep", 10),
                "encryption",
                Map.of("required", false),
                "deletionPolicy",
                "Retain"));
    assertThat(java.util.Optional.ofNullable(stored.getMetadata().getLabels()).orElse(Map.of()))
        .doesNotContainKey("x");
    assertThat(stored.getMetadata().getGeneration()).isEqualTo(generation);
    assertThat(stored.getAdditionalProperties().get("status")).isEqualTo(Map.of("queued", 3));
  }

  @Test
  @DisplayName(
      "When spec.workspace is removed from a TerraformState of the default workspace, then the"
          + " default comes back, as an API server decodes the patched object, and it is never"
          + " stored without a workspace")
  void removedWorkspaceIsDefaultedAgain() {
    apply(manifest("keep-default", "{}"));

    client
        .resources(TerraformState.class)
        .inNamespace("default")
        .withName("keep-default")
        .patch(
            io.fabric8.kubernetes.client.dsl.base.PatchContext.of(
                io.fabric8.kubernetes.client.dsl.base.PatchType.JSON),
            "[{\"op\":\"remove\",\"path\":\"/spec/workspace\"}]");

    assertThat(workspaceOf("keep-default")).isEqualTo("default");
  }
}
