package io.leasehold.operator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.kubernetes.api.model.apiextensions.v1.CustomResourceDefinition;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.cli.Main;
import io.leasehold.embedded.EmbeddedKubernetes;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * An operator that finds the TerraformState CRD missing or older than it needs says so (readiness,
 * log, a Warning Event on its pod) instead of exiting into a crash loop, and starts once the CRD is
 * upgraded.
 */
class CrdCompatibilityTest {

  private static JsonNode copyOfBundled() {
    return CrdCompatibility.bundled().deepCopy();
  }

  private static ObjectNode v1alpha1(JsonNode crd) {
    for (JsonNode v : crd.at("/spec/versions")) {
      if (v.path("name").asText().equals("v1alpha1")) {
        return (ObjectNode) v;
      }
    }
    throw new AssertionError("no v1alpha1 in the CRD");
  }

  @Test
  @DisplayName("The CRD this operator was built with is current")
  void sameCrdIsCurrent() {
    CrdCompatibility.Verdict v = CrdCompatibility.compare(copyOfBundled(), copyOfBundled());
    assertThat(v.current()).isTrue();
    assertThat(v.message()).isEmpty();
  }

  @Test
  @DisplayName(
      "A missing CRD, or one that does not serve v1alpha1, is unusable, saying how to fix it")
  void missingOrNotServed() {
    CrdCompatibility.Verdict absent = CrdCompatibility.compare(null, copyOfBundled());
    assertThat(absent.usable()).isFalse();
    assertThat(absent.message()).contains("is not installed").contains("helm upgrade");

    JsonNode notServed = copyOfBundled();
    v1alpha1(notServed).put("served", false);
    CrdCompatibility.Verdict v = CrdCompatibility.compare(notServed, copyOfBundled());
    assertThat(v.usable()).isFalse();
    assertThat(v.message()).contains("does not serve v1alpha1");
  }

  @Test
  @DisplayName(
      "A CRD lacking fields the operator writes is older: usable, naming the missing fields")
  void olderSchema() {
    JsonNode older = copyOfBundled();
    ObjectNode status =
        (ObjectNode) v1alpha1(older).at("/schema/openAPIV3Schema/properties/status/properties");
    status.remove("queue");
    ((ObjectNode) status.at("/lock/properties")).remove("vouched");
    CrdCompatibility.Verdict v = CrdCompatibility.compare(older, copyOfBundled());
    assertThat(v.usable()).isTrue();
    assertThat(v.current()).isFalse();
    assertThat(v.missing()).containsExactly("status.lock.vouched", "status.queue");
    assertThat(v.message()).contains("older than this operator").contains("status.queue");
  }

  @Test
  @DisplayName(
      "run against a cluster without the CRD stays up, not ready, says why in /readyz and in a"
          + " Warning Event on its pod, and becomes ready once the CRD is installed")
  void waitsForTheCrdInsteadOfCrashing(@TempDir Path dir) throws Exception {
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient client = api.newClient()) {
      CustomResourceDefinition crd =
          client
              .apiextensions()
              .v1()
              .customResourceDefinitions()
              .withName(CrdCompatibility.CRD_NAME)
              .get();
      client.resource(crd).delete();
      await()
          .atMost(Duration.ofSeconds(10))
          .until(
              () ->
                  client
                          .apiextensions()
                          .v1()
                          .customResourceDefinitions()
                          .withName(CrdCompatibility.CRD_NAME)
                          .get()
                      == null);
      Path kubeconfig = dir.resolve("kubeconfig");
      api.writeKubeconfig(kubeconfig);
      int management = freePort();
      ProcessBuilder pb =
          new ProcessBuilder(
                  List.of(
                      ProcessHandle.current().info().command().orElseThrow(),
                      "-cp",
                      System.getProperty("java.class.path"),
                      Main.class.getName(),
                      "run",
                      "--plain-http",
                      "--no-leader-election",
                      "--http-host",
                      "127.0.0.1",
                      "--http-port",
                      Integer.toString(freePort()),
                      "--management-port",
                      Integer.toString(management)))
              .redirectErrorStream(true)
              .redirectOutput(dir.resolve("out.log").toFile());
      pb.environment().put("KUBECONFIG", kubeconfig.toString());
      pb.environment().put("POD_NAMESPACE", "default");
      pb.environment().put("POD_NAME", "leasehold-0");
      pb.environment().put("POD_UID", "uid-0");
      Process child = pb.start();
      try {
        String readyz = "http://127.0.0.1:" + management + "/readyz";
        await()
            .atMost(Duration.ofSeconds(60))
            .ignoreExceptions()
            .until(() -> get(readyz).body().contains("is not installed"));
        assertThat(get(readyz).statusCode()).isEqualTo(503);
        assertThat(get("http://127.0.0.1:" + management + "/healthz").statusCode())
            .as("alive, so the kubelet does not restart it")
            .isEqualTo(200);
        await()
            .atMost(Duration.ofSeconds(20))
            .untilAsserted(
                () ->
                    assertThat(client.v1().events().inNamespace("default").list().getItems())
                        .anySatisfy(
                            e -> {
                              assertThat(e.getReason())
                                  .isEqualTo("CustomResourceDefinitionOutdated");
                              assertThat(e.getType()).isEqualTo("Warning");
                              assertThat(e.getInvolvedObject().getName()).isEqualTo("leasehold-0");
                              assertThat(e.getInvolvedObject().getKind()).isEqualTo("Pod");
                              assertThat(e.getMessage()).contains("is not installed");
                            }));
        assertThat(child.isAlive()).isTrue();

        crd.getMetadata().setResourceVersion(null);
        client.resource(crd).create();
        await()
            .atMost(Duration.ofSeconds(60))
            .ignoreExceptions()
            .until(() -> get(readyz).statusCode() == 200);
      } finally {
        child.destroy();
        child.waitFor();
      }
    }
  }

  private static HttpResponse<String> get(String url) throws Exception {
    return HttpClient.newHttpClient()
        .send(
            HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10)).build(),
            HttpResponse.BodyHandlers.ofString());
  }

  private static int freePort() throws Exception {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }
}
