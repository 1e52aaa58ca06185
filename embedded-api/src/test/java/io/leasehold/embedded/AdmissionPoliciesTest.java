package io.leasehold.embedded;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.ByteArrayInputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * Admission policies a user stores in the embedded API are applied as an API server applies them:
 * JSON patch mutations, match conditions, messages built by expressions, the binding's actions and
 * the policy's failurePolicy.
 */
class AdmissionPoliciesTest {

  private static final ObjectMapper JSON = new ObjectMapper();
  private final HttpClient http = HttpClient.newHttpClient();
  private EmbeddedKubernetes api;

  @BeforeEach
  void start() {
    api = EmbeddedKubernetes.start(0);
  }

  @AfterEach
  void stop() {
    api.close();
  }

  private void install(String yaml) {
    api.installAdmissionPolicies(
        new ByteArrayInputStream(yaml.getBytes(StandardCharsets.UTF_8)), "test policies");
  }

  private HttpResponse<String> createConfigMap(String namespace, String name, String data)
      throws Exception {
    // As in a cluster, a namespace exists before anything is created in it.
    http.send(
        HttpRequest.newBuilder(URI.create(api.url() + "/api/v1/namespaces"))
            .header("Content-Type", "application/json")
            .POST(
                HttpRequest.BodyPublishers.ofString(
                    "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\""
                        + namespace
                        + "\"}}"))
            .build(),
        HttpResponse.BodyHandlers.ofString());
    String body =
        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\""
            + name
            + "\"},\"data\":"
            + data
            + "}";
    return http.send(
        HttpRequest.newBuilder(
                URI.create(api.url() + "/api/v1/namespaces/" + namespace + "/configmaps"))
            .header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body))
            .build(),
        HttpResponse.BodyHandlers.ofString());
  }

  private static JsonNode json(HttpResponse<String> response) throws Exception {
    return JSON.readTree(response.body());
  }

  @Test
  @DisplayName(
      "A JSON patch mutation applies where its match condition holds, and only there; the"
          + " mutated object is what is stored")
  void jsonPatchMutationWithMatchCondition() throws Exception {
    install(
        """
        apiVersion: admissionregistration.k8s.io/v1beta1
        kind: MutatingAdmissionPolicy
        metadata: {name: stamp}
        spec:
          matchConstraints:
            resourceRules:
              - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}
          matchConditions:
            - name: wants-stamp
              expression: "has(object.data) && 'stamp' in object.data"
          mutations:
            - patchType: JSONPatch
              jsonPatch:
                expression: >-
                  [JSONPatch{op: "replace", path: "/data/stamp",
                    value: object.metadata.name + "@" + request.namespace}]
        ---
        apiVersion: admissionregistration.k8s.io/v1beta1
        kind: MutatingAdmissionPolicyBinding
        metadata: {name: stamp}
        spec: {policyName: stamp}
        """);
    HttpResponse<String> stamped = createConfigMap("team", "one", "{\"stamp\":\"\"}");
    assertThat(stamped.statusCode()).as(stamped.body()).isEqualTo(201);
    assertThat(json(stamped).at("/data/stamp").asText()).isEqualTo("one@team");
    assertThat(
            api.client()
                .configMaps()
                .inNamespace("team")
                .withName("one")
                .get()
                .getData()
                .get("stamp"))
        .isEqualTo("one@team");

    HttpResponse<String> plain = createConfigMap("team", "two", "{\"other\":\"x\"}");
    assertThat(json(plain).at("/data").toString()).isEqualTo("{\"other\":\"x\"}");
  }

  @Test
  @DisplayName(
      "A failed validation is refused with the reason's status and the message expression's"
          + " text (Deny), only warned about (Warn), or let through (Audit)")
  void validationActions() throws Exception {
    String policy =
        """
        apiVersion: admissionregistration.k8s.io/v1
        kind: ValidatingAdmissionPolicy
        metadata: {name: NAME}
        spec:
          matchConstraints:
            namespaceSelector:
              matchLabels: {kubernetes.io/metadata.name: NS}
            resourceRules:
              - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}
          validations:
            - expression: "!('secret' in object.data)"
              messageExpression: "'no secrets in ' + object.metadata.name"
              reason: Forbidden
        ---
        apiVersion: admissionregistration.k8s.io/v1
        kind: ValidatingAdmissionPolicyBinding
        metadata: {name: NAME}
        spec: {policyName: NAME, validationActions: [ACTION]}
        """;
    install(policy.replace("NAME", "deny").replace("NS", "strict").replace("ACTION", "Deny"));
    install(policy.replace("NAME", "warn").replace("NS", "lenient").replace("ACTION", "Warn"));
    install(policy.replace("NAME", "audit").replace("NS", "audited").replace("ACTION", "Audit"));

    HttpResponse<String> denied = createConfigMap("strict", "leak", "{\"secret\":\"x\"}");
    assertThat(denied.statusCode()).isEqualTo(403);
    assertThat(json(denied).path("message").asText())
        .isEqualTo(
            "configmaps \"leak\" is forbidden: ValidatingAdmissionPolicy 'deny' with binding"
                + " 'deny' denied request: no secrets in leak");
    assertThat(api.client().configMaps().inNamespace("strict").withName("leak").get()).isNull();

    HttpResponse<String> warned = createConfigMap("lenient", "leak", "{\"secret\":\"x\"}");
    assertThat(warned.statusCode()).isEqualTo(201);
    assertThat(warned.headers().allValues("Warning"))
        .singleElement()
        .asString()
        .contains("'warn'")
        .contains("no secrets in leak");

    HttpResponse<String> audited = createConfigMap("audited", "leak", "{\"secret\":\"x\"}");
    assertThat(audited.statusCode()).isEqualTo(201);
    assertThat(audited.headers().allValues("Warning")).isEmpty();
  }

  @Test
  @DisplayName(
      "An expression that fails at run time refuses the request under failurePolicy Fail and"
          + " is skipped under Ignore")
  void failurePolicy() throws Exception {
    String policy =
        """
        apiVersion: admissionregistration.k8s.io/v1
        kind: ValidatingAdmissionPolicy
        metadata: {name: NAME}
        spec:
          failurePolicy: POLICY
          matchConstraints:
            namespaceSelector:
              matchLabels: {kubernetes.io/metadata.name: NS}
            resourceRules:
              - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}
          validations:
            - expression: "object.data.missing == 'x'"
        ---
        apiVersion: admissionregistration.k8s.io/v1
        kind: ValidatingAdmissionPolicyBinding
        metadata: {name: NAME}
        spec: {policyName: NAME, validationActions: [Deny]}
        """;
    install(policy.replace("NAME", "strict").replace("POLICY", "Fail").replace("NS", "a"));
    install(policy.replace("NAME", "lenient").replace("POLICY", "Ignore").replace("NS", "b"));

    HttpResponse<String> failed = createConfigMap("a", "c", "{\"present\":\"x\"}");
    assertThat(failed.statusCode()).isEqualTo(422);
    assertThat(json(failed).path("message").asText())
        .contains("'strict'")
        .contains("object.data.missing == 'x'");
    assertThat(createConfigMap("b", "c", "{\"present\":\"x\"}").statusCode()).isEqualTo(201);
  }
}
