package io.leasehold.embedded.corpus;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import io.leasehold.embedded.EmbeddedKubernetes;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * The real-cluster half of the corpus: runs it against the real API server of {@code
 * hack/cluster.sh} (with leasehold's CRD and the chart's admission policies installed, as the
 * embedded API has them) and fails when the golden file no longer holds the real server's answers.
 * With {@code -Dcorpus.record=true} it writes the golden file instead.
 */
class ApiCorpusClusterIT {

  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());
  private static final String JSON = "application/json";

  @Test
  @DisplayName("the golden file holds the real API server's answers to the corpus")
  void goldenFileMatchesTheRealApiServer() throws Exception {
    Path kubeconfig = clusterKubeconfig();
    CorpusRunner.Target target = CorpusRunner.Target.fromKubeconfig(kubeconfig);
    Corpus corpus = Corpus.load();
    CorpusRunner runner = new CorpusRunner(corpus, target);
    String version = install(runner);
    Map<String, JsonNode> outcomes;
    try {
      outcomes = runner.runAll();
    } finally {
      runner.cleanUp();
    }
    if (Boolean.getBoolean("corpus.record")) {
      Path file = ApiCorpusTest.projectRoot().resolve(Golden.SOURCE);
      Golden.write(file, version, outcomes);
      System.out.println("corpus: recorded " + outcomes.size() + " cases in " + file);
      return;
    }
    Map<String, JsonNode> golden = Golden.load();
    List<String> problems = new ArrayList<>();
    outcomes.forEach(
        (id, real) -> {
          JsonNode recorded = golden.get(id);
          if (recorded == null) {
            problems.add(id + ": not in the golden file");
          } else if (!recorded.equals(real)) {
            problems.add(
                id
                    + ": the real API server now answers otherwise\n    "
                    + String.join("\n    ", CorpusRunner.differences(recorded, real, "")));
          }
        });
    golden.keySet().stream()
        .filter(id -> !outcomes.containsKey(id))
        .forEach(id -> problems.add(id + ": in the golden file but no corpus case"));
    if (!problems.isEmpty()) {
      throw new AssertionError(
          "the golden file ("
              + Golden.SOURCE
              + ") no longer holds the real API server's answers ("
              + version
              + "); record it again with\n  "
              + Golden.RECORD_COMMAND
              + "\n"
              + String.join("\n", problems));
    }
  }

  private static Path clusterKubeconfig() {
    String dir = System.getProperty("leasehold.cluster.dir", "");
    if (dir.isBlank()) {
      dir = System.getenv().getOrDefault("LEASEHOLD_CLUSTER_DIR", "");
    }
    if (dir.isBlank()) {
      throw new AssertionError(
          "the corpus's real-cluster run needs a control plane: start one with `hack/cluster.sh"
              + " up DIR` and pass -Dleasehold.cluster.dir=DIR (hack/test.sh does both)");
    }
    Path kubeconfig = Path.of(dir).resolve("kubeconfig");
    if (!Files.isRegularFile(kubeconfig)) {
      throw new AssertionError(
          "no cluster in " + dir + ": start one with `hack/cluster.sh up " + dir + "`");
    }
    return kubeconfig;
  }

  /**
   * Installs what the embedded API starts with: leasehold's CRD and the chart's admission policies
   * (the embedded API's copy, which AdmissionPolicyChartTest holds to the chart). Returns the
   * server's version.
   */
  private static String install(CorpusRunner runner) throws Exception {
    List<JsonNode> docs = new ArrayList<>();
    for (String resource :
        List.of(EmbeddedKubernetes.CRD_RESOURCE, EmbeddedKubernetes.ADMISSION_POLICIES_RESOURCE)) {
      try (InputStream in = EmbeddedKubernetes.class.getResourceAsStream(resource)) {
        var values = YAML.readerFor(JsonNode.class).<JsonNode>readValues(in);
        while (values.hasNext()) {
          JsonNode doc = values.next();
          if (doc != null && doc.isObject() && !doc.isEmpty()) {
            docs.add(doc);
          }
        }
      }
    }
    for (JsonNode doc : docs) {
      String[] gv = doc.path("apiVersion").asText().split("/");
      String kind = doc.path("kind").asText();
      String plural = kind.toLowerCase(java.util.Locale.ROOT).replaceFirst("y$", "ie") + "s";
      String collection = "/apis/" + gv[0] + "/" + gv[1] + "/" + plural;
      String path = collection + "/" + doc.path("metadata").path("name").asText();
      CorpusRunner.Answer current = runner.send("GET", path, null, null, null);
      if (current.code() == 404) {
        check(runner.send("POST", collection, null, doc, JSON), 201, path);
      } else {
        JsonNode stored = current.json();
        if (!stored.path("spec").equals(doc.path("spec"))) {
          ObjectNode replacement = doc.deepCopy();
          ((ObjectNode) replacement.get("metadata"))
              .put("resourceVersion", stored.path("metadata").path("resourceVersion").asText());
          check(runner.send("PUT", path, null, replacement, JSON), 200, path);
        }
      }
    }
    long deadline = System.currentTimeMillis() + 60_000;
    while (runner
            .send("GET", "/apis/leasehold.io/v1alpha1/terraformstates", null, null, null)
            .code()
        != 200) {
      if (System.currentTimeMillis() > deadline) {
        throw new AssertionError("the TerraformState CRD was not served within 60 s");
      }
      Thread.sleep(200);
    }
    awaitPolicies(runner);
    return runner.send("GET", "/version", null, null, null).json().path("gitVersion").asText();
  }

  /**
   * Waits until the API server applies the chart's admission policies, which it does once its
   * informers have them: a runner Job created without {@code suspend} comes back suspended, and a
   * waiting one cannot be unsuspended but by the operator (both tried as dry runs).
   */
  private static void awaitPolicies(CorpusRunner runner) throws Exception {
    String ns = "corpus-policies-" + java.util.UUID.randomUUID().toString().substring(0, 4);
    JsonNode namespace =
        YAML.readTree("{apiVersion: v1, kind: Namespace, metadata: {name: " + ns + "}}");
    check(runner.send("POST", "/api/v1/namespaces", null, namespace, JSON), 201, ns);
    String jobs = "/apis/batch/v1/namespaces/" + ns + "/jobs";
    ObjectNode job =
        (ObjectNode)
            YAML.readTree(
                "{apiVersion: batch/v1, kind: Job, metadata: {name: waiting, labels:"
                    + " {leasehold.io/state: a}}, spec: {suspend: true, template: {spec:"
                    + " {restartPolicy: Never, containers: [{name: tf, image: busybox}]}}}}");
    try {
      check(runner.send("POST", jobs, null, job, JSON), 201, jobs + "/waiting");
      ObjectNode unsuspended = job.deepCopy();
      ((ObjectNode) unsuspended.get("spec")).remove("suspend");
      ((ObjectNode) unsuspended.get("metadata")).put("name", "unsuspended");
      JsonNode unsuspend = YAML.readTree("{spec: {suspend: false}}");
      long deadline = System.currentTimeMillis() + 60_000;
      while (true) {
        CorpusRunner.Answer created =
            runner.send("POST", jobs + "?dryRun=All", null, unsuspended, JSON);
        CorpusRunner.Answer refused =
            runner.send(
                "PATCH",
                jobs + "/waiting?dryRun=All",
                "alice",
                unsuspend,
                "application/merge-patch+json");
        if (created.code() == 201
            && created.json().at("/spec/suspend").asBoolean(false)
            && refused.code() == 403) {
          return;
        }
        if (System.currentTimeMillis() > deadline) {
          throw new AssertionError(
              "the chart's admission policies were not applied within 60 s: a runner Job was"
                  + " created with suspend "
                  + created.json().at("/spec/suspend")
                  + " ("
                  + created.code()
                  + "), unsuspending a waiting one by anyone got "
                  + refused.code());
        }
        Thread.sleep(200);
      }
    } finally {
      runner.send("DELETE", "/api/v1/namespaces/" + ns, null, null, null);
    }
  }

  private static void check(CorpusRunner.Answer answer, int code, String what) {
    if (answer.code() != code) {
      throw new AssertionError("installing " + what + ": " + answer.code() + " " + answer.body());
    }
  }
}
