package io.leasehold.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * {@code run --embedded} in a process of its own, given objects it cannot read through the embedded
 * API's plain HTTP, as any client could send them (no kubectl, no Fabric8 client).
 *
 * <p>The TerraformStates are stored under a CRD whose spec and status keep whatever they are given
 * ({@code x-kubernetes-preserve-unknown-fields}), as a newer CRD declaring other fields or types
 * would: an API server keeps them whether or not it prunes undeclared fields. A Job with a value of
 * the wrong type is refused (400), by the embedded API as by a real one, and never reaches the
 * operator ({@code UnreadableObjectsTest} puts such Jobs and Leases in the store itself).
 */
class UnreadableObjectProcessTest {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Duration WAIT = Duration.ofSeconds(60);
  private static final Path QUICKSTART =
      Path.of(
          System.getProperty("leasehold.projectRoot"), "examples/quickstart/terraformstate.yaml");

  private final HttpClient http =
      HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

  @Test
  @DisplayName(
      "When objects the operator cannot read are sent to the embedded API over plain HTTP, then"
          + " the process stays up, says so on those objects, keeps serving and locking the other"
          + " states, and reconciles a corrected TerraformState as before")
  void processStaysUpOnObjectsItCannotRead() throws Exception {
    String java = ProcessHandle.current().info().command().orElseThrow(IllegalStateException::new);
    Process process =
        new ProcessBuilder(
                java,
                "-cp",
                System.getProperty("java.class.path"),
                Main.class.getName(),
                "run",
                "--embedded",
                "-f",
                QUICKSTART.toString())
            .redirectErrorStream(true)
            .start();
    Map<String, String> printed = new ConcurrentHashMap<>();
    Thread reader =
        new Thread(
            () -> {
              try (BufferedReader out =
                  new BufferedReader(
                      new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
                for (String line = out.readLine(); line != null; line = out.readLine()) {
                  int colon = line.indexOf(": ");
                  if (colon > 0
                      && (line.startsWith("kubernetes-api")
                          || line.startsWith("terraform-backend"))) {
                    printed.putIfAbsent(line.substring(0, colon), line.substring(colon + 2).trim());
                  }
                }
              } catch (IOException e) {
                // The process ended; the test sees that through isAlive().
              }
            },
            "operator-output");
    reader.setDaemon(true);
    reader.start();
    try {
      await()
          .atMost(WAIT)
          .until(
              () ->
                  !process.isAlive()
                      || (printed.containsKey("kubernetes-api")
                          && printed.containsKey("terraform-backend")));
      assertThat(process.isAlive()).as("the operator process is up").isTrue();
      String api = printed.get("kubernetes-api");
      String backend = printed.get("terraform-backend");
      String states = api + "/apis/leasehold.io/v1alpha1/namespaces/default/terraformstates";
      await()
          .atMost(WAIT)
          .until(() -> "True".equals(condition(read(states + "/quickstart"), "Ready", "status")));

      // A newer CRD: spec and status keep what they are given.
      String crdPath =
          api
              + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/terraformstates.leasehold.io";
      ObjectNode crd = (ObjectNode) read(crdPath);
      ObjectNode schema = (ObjectNode) crd.at("/spec/versions/0/schema/openAPIV3Schema");
      schema.remove("x-kubernetes-validations");
      ObjectNode properties = (ObjectNode) schema.get("properties");
      properties.set(
          "spec",
          JSON.createObjectNode()
              .put("type", "object")
              .put("x-kubernetes-preserve-unknown-fields", true));
      properties.set(
          "status", JSON.createObjectNode().put("x-kubernetes-preserve-unknown-fields", true));
      assertThat(send("PUT", crdPath, crd)).isEqualTo(200);

      ObjectNode broken =
          (ObjectNode)
              JSON.readTree(
                  "{\"apiVersion\":\"leasehold.io/v1alpha1\",\"kind\":\"TerraformState\","
                      + "\"metadata\":{\"name\":\"broken\"},\"spec\":{\"workspace\":\"default\","
                      + "\"history\":{\"keep\":{}}}}");
      assertThat(send("POST", states, broken)).isEqualTo(201);
      ObjectNode badJob =
          (ObjectNode)
              JSON.readTree(
                  "{\"apiVersion\":\"batch/v1\",\"kind\":\"Job\",\"metadata\":{\"name\":\"bad\","
                      + "\"labels\":{\"leasehold.io/state\":\"quickstart\"}},"
                      + "\"spec\":{\"suspend\":true,\"parallelism\":\"two\",\"template\":{\"spec\":"
                      + "{\"restartPolicy\":\"Never\",\"containers\":[{\"name\":\"c\","
                      + "\"image\":\"x\"}]}}}}");
      assertThat(send("POST", api + "/apis/batch/v1/namespaces/default/jobs", badJob))
          .as("a Job with a value of the wrong type is refused, as a real API server refuses it")
          .isEqualTo(400);
      ObjectNode scrawled =
          (ObjectNode)
              JSON.readTree(
                  "{\"apiVersion\":\"leasehold.io/v1alpha1\",\"kind\":\"TerraformState\","
                      + "\"metadata\":{\"name\":\"scrawled\"},"
                      + "\"spec\":{\"workspace\":\"default\"}}");
      assertThat(send("POST", states, scrawled)).isEqualTo(201);
      await()
          .atMost(WAIT)
          .until(() -> "True".equals(condition(read(states + "/scrawled"), "Ready", "status")));
      assertThat(
              send(
                  "PATCH",
                  states + "/scrawled/status",
                  "application/merge-patch+json",
                  JSON.readTree("{\"status\":\"two\"}")))
          .isEqualTo(200);

      await()
          .atMost(WAIT)
          .until(
              () ->
                  !process.isAlive()
                      || "FieldUnreadable"
                          .equals(condition(read(states + "/broken"), "Ready", "reason")));
      assertThat(process.isAlive()).as("the operator process is up").isTrue();
      assertThat(condition(read(states + "/broken"), "Ready", "message"))
          .contains("spec.history.keep cannot be read");
      await()
          .atMost(WAIT)
          .until(() -> "True".equals(condition(read(states + "/scrawled"), "Ready", "status")));
      await()
          .atMost(WAIT)
          .until(
              () ->
                  read(api + "/api/v1/namespaces/default/events")
                          .path("items")
                          .findValues("reason")
                          .stream()
                          .filter(r -> r.asText().equals("FieldUnreadable"))
                          .count()
                      >= 2);

      // The other state is served and locked as before.
      String lock =
          "{\"ID\":\"5c0a7d1e-0000-4000-8000-000000000001\",\"Operation\":\"OperationTypeApply\","
              + "\"Info\":\"\",\"Who\":\"eve@laptop\",\"Version\":\"1.11.4\","
              + "\"Created\":\"2026-01-01T00:00:00Z\",\"Path\":\"\"}";
      assertThat(send("LOCK", backend + "default/quickstart/lock", JSON.readTree(lock)))
          .isEqualTo(200);
      await()
          .atMost(WAIT)
          .until(() -> "True".equals(condition(read(states + "/quickstart"), "Locked", "status")));
      assertThat(send("UNLOCK", backend + "default/quickstart/lock", JSON.readTree(lock)))
          .isEqualTo(200);

      // Corrected, the broken one is reconciled as any other.
      ObjectNode corrected = (ObjectNode) read(states + "/broken");
      ((ObjectNode) corrected.at("/spec/history")).put("keep", 5);
      assertThat(send("PUT", states + "/broken", corrected)).isEqualTo(200);
      await()
          .atMost(WAIT)
          .until(() -> "True".equals(condition(read(states + "/broken"), "Ready", "status")));
      assertThat(process.isAlive()).as("the operator process is up").isTrue();
    } finally {
      process.destroy();
      if (!process.waitFor(60, TimeUnit.SECONDS)) {
        process.destroyForcibly();
      }
    }
  }

  /** The object at {@code url}; missing when there is none, or the API is gone with the process. */
  private JsonNode read(String url) throws Exception {
    HttpResponse<String> r;
    try {
      r =
          http.send(
              HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(30)).build(),
              HttpResponse.BodyHandlers.ofString());
    } catch (IOException e) {
      return JSON.missingNode();
    }
    return r.statusCode() == 200 ? JSON.readTree(r.body()) : JSON.missingNode();
  }

  private int send(String method, String url, JsonNode body) throws Exception {
    return send(method, url, "application/json", body);
  }

  private int send(String method, String url, String contentType, JsonNode body) throws Exception {
    return http.send(
            HttpRequest.newBuilder(URI.create(url))
                .timeout(Duration.ofSeconds(30))
                .header("Content-Type", contentType)
                .method(method, HttpRequest.BodyPublishers.ofString(body.toString()))
                .build(),
            HttpResponse.BodyHandlers.discarding())
        .statusCode();
  }

  private static String condition(JsonNode object, String type, String field) {
    for (JsonNode c : object.at("/status/conditions")) {
      if (type.equals(c.path("type").asText())) {
        return c.path(field).asText();
      }
    }
    return null;
  }
}
