package io.leasehold.examples;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.api.TerraformState;
import io.leasehold.backend.HttpBackend;
import io.leasehold.backend.JobPods;
import io.leasehold.backend.KubernetesAccess;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.support.Binaries;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.TlsClients;
import io.leasehold.tls.BackendTls;
import io.leasehold.tls.SelfSignedCa;
import io.leasehold.tls.TlsMaterial;
import io.leasehold.tls.TlsSource;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The CI recipes of examples/ci, run: each recipe's call of {@code leasehold-terraform.sh} is read
 * out of the recipe and run as written, with the real terraform, against leasehold's backend over
 * HTTPS with token authentication (a TokenReview for the audience leasehold). Two pipelines at once
 * on one state: no lock errors, no lost writes.
 */
class CiRecipesE2ETest {

  private static final Path ROOT = Path.of(System.getProperty("leasehold.projectRoot"));
  private static final Path CI = ROOT.resolve("examples/ci");
  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());
  private static final ObjectMapper JSON = new ObjectMapper();

  /** What every recipe runs; the test runs the strings it reads out of the recipes. */
  private static final Pattern CALL =
      Pattern.compile("sh examples/ci/leasehold-terraform\\.sh (plan|apply) infra/network");

  private static final String RUNNER = "system:serviceaccount:infra:network-runner";
  private static final String HOLDER = "system:serviceaccount:infra:someone-else";
  private static final String EVENTS_COMMAND =
      "kubectl get events -n infra --field-selector"
          + " type=Warning,involvedObject.kind=TerraformState,involvedObject.name=network";

  /** Token -> [audience it was issued for, user]. */
  private static final Map<String, List<String>> TOKENS =
      Map.of(
          "runner-token", List.of("leasehold", RUNNER),
          "holder-token", List.of("leasehold", HOLDER),
          "vault-token", List.of("vault", RUNNER));

  /** The Terraform code of the pipelines: each apply appends its name to the state's list. */
  private static final String CODE =
      """
      terraform {
        backend "http" {}
      }

      variable "pipeline" {
        type = string
      }

      variable "state_address" {
        type = string
      }

      # The state as it is when this apply holds the lock (absent before the first write).
      data "terraform_remote_state" "before" {
        count   = var.pipeline == "first" ? 0 : 1
        backend = "http"
        config  = { address = var.state_address }
      }

      locals {
        runs = try(data.terraform_remote_state.before[0].outputs.runs, [])
      }

      resource "terraform_data" "last" {
        input = "${var.pipeline} after ${length(local.runs)}"
      }

      output "runs" {
        value = concat(local.runs, [var.pipeline])
      }
      """;

  private static OperatorHarness harness;
  private static HttpBackend backend;
  private static SelfSignedCa ca;
  private static Path bin;
  private static final List<JsonNode> tokenReviews = new CopyOnWriteArrayList<>();
  private static final List<JsonNode> accessReviews = new CopyOnWriteArrayList<>();

  @TempDir static Path shared;

  @BeforeAll
  static void start() throws Exception {
    // The script calls terraform by name: the one the tests run goes first on the PATH.
    Binaries.Found terraform = Binaries.terraform();
    if (terraform.path().getFileName().toString().equals("terraform")) {
      bin = terraform.path().getParent();
    } else {
      bin = Files.createDirectories(shared.resolve("bin"));
      Files.createSymbolicLink(bin.resolve("terraform"), terraform.path());
    }

    harness = OperatorHarness.start();
    var server = harness.api().mockServer();
    server
        .expect()
        .post()
        .withPath("/apis/authentication.k8s.io/v1/tokenreviews")
        .andReply(200, r -> tokenReview(r.getBody().readUtf8()))
        .always();
    server
        .expect()
        .post()
        .withPath("/apis/authorization.k8s.io/v1/subjectaccessreviews")
        .andReply(200, r -> accessReview(r.getBody().readUtf8()))
        .always();

    ca = SelfSignedCa.create("leasehold test CA");
    TlsMaterial serving = ca.issue(List.of("localhost", "127.0.0.1"));
    BackendTls tls =
        BackendTls.load(
            TlsSource.files(
                Files.writeString(shared.resolve("tls.crt"), serving.certificateChain()),
                Files.writeString(shared.resolve("tls.key"), serving.privateKey()),
                Optional.of(Files.writeString(shared.resolve("ca.crt"), ca.certificatePem()))),
            BackendTls.ClientAuthentication.NONE,
            Duration.ofMinutes(1));
    backend =
        io.leasehold.cli.Replica.serve(
            harness.operator(),
            new io.leasehold.cli.Replica.Backend(
                new KubernetesAccess(harness.client()),
                JobPods.NONE,
                new HttpBackend.Config("127.0.0.1", 0, Duration.ofMinutes(15)).withTls(tls),
                1024 * 1024));

    harness
        .client()
        .resource(new NamespaceBuilder().withNewMetadata().withName("infra").endMetadata().build())
        .create();
    TerraformState state = new TerraformState();
    state.getMetadata().setName("network");
    state.getMetadata().setNamespace("infra");
    harness.client().resource(state).create();
    await().atMost(Duration.ofSeconds(20)).until(() -> lease() != null);
  }

  @AfterAll
  static void stop() {
    if (backend != null) {
      backend.close();
    }
    if (harness != null) {
      harness.close();
    }
  }

  /** A TokenReview answered as the API server does: only for an audience the token was for. */
  private static Object tokenReview(String body) {
    try {
      ObjectNode review = (ObjectNode) JSON.readTree(body);
      tokenReviews.add(review.deepCopy());
      List<String> asked = new ArrayList<>();
      review.at("/spec/audiences").forEach(a -> asked.add(a.asText()));
      List<String> issued = TOKENS.get(review.at("/spec/token").asText());
      ObjectNode status = review.putObject("status");
      if (issued == null || !asked.contains(issued.get(0))) {
        status
            .put("authenticated", false)
            .put("error", "token audiences are invalid for the target audiences " + asked);
      } else {
        status.put("authenticated", true).putArray("audiences").add(issued.get(0));
        status.putObject("user").put("username", issued.get(1));
      }
      return review;
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }

  /** Only the two ServiceAccounts may use the state infra/network, nothing else. */
  private static Object accessReview(String body) {
    try {
      ObjectNode review = (ObjectNode) JSON.readTree(body);
      accessReviews.add(review.deepCopy());
      JsonNode attributes = review.at("/spec/resourceAttributes");
      String user = review.at("/spec/user").asText();
      boolean allowed =
          (user.equals(RUNNER) || user.equals(HOLDER))
              && attributes.path("namespace").asText().equals("infra")
              && attributes.path("name").asText().equals("network")
              && attributes.path("subresource").asText().equals("state");
      review.putObject("status").put("allowed", allowed);
      return review;
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }

  private static Lease lease() {
    return harness
        .client()
        .leases()
        .inNamespace("infra")
        .withName("lock-tfstate-default-network")
        .get();
  }

  private static String stateUrl() {
    return backend.url() + "infra/network";
  }

  /** A recipe's calls of the script, as written, and the LEASEHOLD_* values it sets. */
  record Recipe(String file, List<String> calls, Map<String, String> env, String text) {}

  private static List<JsonNode> documents(String file) throws IOException {
    List<JsonNode> docs = new ArrayList<>();
    try (var it = YAML.readerFor(JsonNode.class).readValues(CI.resolve(file).toFile())) {
      while (it.hasNext()) {
        JsonNode doc = (JsonNode) it.next();
        if (doc != null && !doc.isNull() && !doc.isMissingNode()) {
          docs.add(doc);
        }
      }
    }
    return docs;
  }

  private static void calls(String script, List<String> into) {
    script
        .lines()
        .map(String::trim)
        .filter(l -> l.contains("leasehold-terraform.sh"))
        .forEach(into::add);
  }

  private static Map<String, String> env(JsonNode list) {
    Map<String, String> env = new LinkedHashMap<>();
    list.forEach(e -> env.put(e.path("name").asText(), e.path("value").asText()));
    return env;
  }

  private static Map<String, String> map(JsonNode object) {
    Map<String, String> env = new LinkedHashMap<>();
    object.fields().forEachRemaining(e -> env.put(e.getKey(), e.getValue().asText()));
    return env;
  }

  private static String command(JsonNode container) {
    List<String> words = new ArrayList<>();
    container.path("command").forEach(w -> words.add(w.asText()));
    container.path("args").forEach(w -> words.add(w.asText()));
    return String.join(" ", words);
  }

  static Recipe githubActions() throws IOException {
    JsonNode workflow = documents("github-actions.yaml").get(0);
    List<String> calls = new ArrayList<>();
    workflow
        .path("jobs")
        .forEach(job -> job.path("steps").forEach(s -> calls(s.path("run").asText(""), calls)));
    return new Recipe(
        "github-actions.yaml", calls, map(workflow.path("env")), read("github-actions.yaml"));
  }

  static Recipe gitlabCi() throws IOException {
    JsonNode pipeline = documents("gitlab-ci.yml").get(0);
    List<String> calls = new ArrayList<>();
    pipeline.forEach(
        job -> {
          job.path("before_script").forEach(line -> calls(line.asText(), calls));
          job.path("script").forEach(line -> calls(line.asText(), calls));
        });
    return new Recipe(
        "gitlab-ci.yml", calls, map(pipeline.path("variables")), read("gitlab-ci.yml"));
  }

  static Recipe argoWorkflow() throws IOException {
    JsonNode template = documents("argo-workflow.yaml").get(0);
    List<String> calls = new ArrayList<>();
    Map<String, String> env = new LinkedHashMap<>();
    for (JsonNode t : template.path("spec").path("templates")) {
      JsonNode container = t.path("container");
      if (command(container).contains("leasehold-terraform.sh")) {
        calls.add(command(container));
        env.putAll(env(container.path("env")));
      }
    }
    return new Recipe("argo-workflow.yaml", calls, env, read("argo-workflow.yaml"));
  }

  static Recipe tekton() throws IOException {
    List<String> calls = new ArrayList<>();
    Map<String, String> env = new LinkedHashMap<>();
    for (JsonNode doc : documents("tekton-pipeline.yaml")) {
      if (doc.path("kind").asText().equals("Task")) {
        for (JsonNode step : doc.path("spec").path("steps")) {
          calls(step.path("script").asText(""), calls);
          if (command(step).contains("leasehold-terraform.sh")) {
            calls.add(command(step));
            env.putAll(env(step.path("env")));
          }
        }
      }
    }
    return new Recipe("tekton-pipeline.yaml", calls, env, read("tekton-pipeline.yaml"));
  }

  private static String read(String file) throws IOException {
    return Files.readString(CI.resolve(file), StandardCharsets.UTF_8);
  }

  static List<Recipe> recipes() throws IOException {
    return List.of(githubActions(), gitlabCi(), argoWorkflow(), tekton());
  }

  /** The apply call of each recipe: what the pipelines below run. */
  private static List<String> applyCalls(List<Recipe> recipes) {
    return recipes.stream()
        .map(r -> r.calls().stream().filter(c -> c.contains(" apply ")).findFirst().orElseThrow())
        .toList();
  }

  @Test
  @DisplayName(
      "Every recipe (GitHub Actions, GitLab CI, Argo Workflows, Tekton) runs the tested script"
          + " as the test runs it, on infra/network, with a token for the audience leasehold, over"
          + " HTTPS verified against leasehold's CA")
  void recipesCallTheTestedScript() throws IOException {
    for (Recipe recipe : recipes()) {
      assertThat(recipe.calls())
          .as("%s calls examples/ci/leasehold-terraform.sh", recipe.file())
          .isNotEmpty()
          .allSatisfy(call -> assertThat(call).as(recipe.file()).matches(CALL))
          .anySatisfy(call -> assertThat(call).contains(" apply "));
      assertThat(recipe.env())
          .as("%s: the state the test runs", recipe.file())
          .containsEntry("LEASEHOLD_STATE", "infra/network");
      assertThat(recipe.env().get("LEASEHOLD_URL"))
          .as(recipe.file())
          .startsWith("https://leasehold.leasehold-system.svc:");
      assertThat(recipe.text()).as(recipe.file()).doesNotContain("http://");
    }

    // Outside the cluster: a token minted for the audience leasehold, and a port-forward to the
    // Service whose name (the certificate's) points at it.
    for (Recipe outside : List.of(githubActions(), gitlabCi())) {
      assertThat(outside.env())
          .containsEntry("LEASEHOLD_URL", "https://leasehold.leasehold-system.svc:8443");
      assertThat(outside.text())
          .as(outside.file())
          .contains("kubectl create token network-runner -n infra --audience leasehold")
          .contains("LEASEHOLD_TOKEN_FILE")
          .contains("kubectl get configmap leasehold-ca -n infra")
          .contains("LEASEHOLD_CA_FILE")
          .contains("kubectl port-forward -n leasehold-system svc/leasehold 8443:8080")
          .contains("127.0.0.1 leasehold.leasehold-system.svc");
    }

    // In the cluster: the Service, a projected token for the audience leasehold mounted where
    // LEASEHOLD_TOKEN_FILE says, the published CA where LEASEHOLD_CA_FILE says.
    for (String file : List.of("argo-workflow.yaml", "tekton-pipeline.yaml")) {
      Recipe inside = file.startsWith("argo") ? argoWorkflow() : tekton();
      assertThat(inside.env())
          .containsEntry("LEASEHOLD_URL", "https://leasehold.leasehold-system.svc:8080")
          .containsEntry("LEASEHOLD_TOKEN_FILE", "/var/run/secrets/leasehold/token")
          .containsEntry("LEASEHOLD_CA_FILE", "/etc/leasehold-ca/ca.crt");
      JsonNode doc =
          documents(file).stream()
              .filter(d -> d.path("kind").asText().matches("WorkflowTemplate|Task"))
              .findFirst()
              .orElseThrow();
      JsonNode volumes = doc.path("spec").path("volumes");
      JsonNode token = volumes.findPath("serviceAccountToken");
      assertThat(token.path("audience").asText()).as(file).isEqualTo("leasehold");
      assertThat(token.path("path").asText()).as(file).isEqualTo("token");
      assertThat(token.path("expirationSeconds").asLong()).as(file).isBetween(600L, 3600L);
      assertThat(volumes.findValuesAsText("name")).as(file).contains("leasehold-ca");
      assertThat(doc.findValues("mountPath").stream().map(JsonNode::asText))
          .as(file)
          .contains("/var/run/secrets/leasehold", "/etc/leasehold-ca");
    }
    JsonNode argo = documents("argo-workflow.yaml").get(0).path("spec");
    assertThat(argo.path("serviceAccountName").asText()).isEqualTo("network-runner");
    assertThat(argo.path("automountServiceAccountToken").asBoolean(true)).isFalse();
    JsonNode run =
        documents("tekton-pipeline.yaml").stream()
            .filter(d -> d.path("kind").asText().equals("PipelineRun"))
            .findFirst()
            .orElseThrow()
            .path("spec")
            .path("taskRunTemplate");
    assertThat(run.path("serviceAccountName").asText()).isEqualTo("network-runner");
    assertThat(run.at("/podTemplate/automountServiceAccountToken").asBoolean(true)).isFalse();
  }

  /** One checkout of a repository holding the script and the code, as a CI system makes it. */
  private static Path checkout(String name) throws IOException {
    Path dir = Files.createDirectories(shared.resolve(name));
    // The script itself, byte for byte, where the recipes call it.
    Path script = Path.of("examples/ci/leasehold-terraform.sh");
    Files.createDirectories(dir.resolve(script).getParent());
    Files.copy(ROOT.resolve(script), dir.resolve(script));
    Files.writeString(
        Files.createDirectories(dir.resolve("infra/network")).resolve("main.tf"), CODE);
    return dir;
  }

  record Run(String pipeline, String call, int exitCode, String output) {}

  /** Runs {@code call}, as read from a recipe, in {@code checkout}, as CI would with this token. */
  private static Run run(Path checkout, String pipeline, String call, String token)
      throws IOException, InterruptedException {
    Path tokenFile = Files.writeString(checkout.resolve("token-" + pipeline), token);
    ProcessBuilder pb =
        new ProcessBuilder("sh", "-c", call).directory(checkout.toFile()).redirectErrorStream(true);
    Map<String, String> env = pb.environment();
    Binaries.environment(env);
    env.put("PATH", bin + java.io.File.pathSeparator + env.get("PATH"));
    env.put("LEASEHOLD_URL", backend.url().replaceFirst("/v1/states/$", ""));
    env.put("LEASEHOLD_STATE", "infra/network");
    env.put("LEASEHOLD_TOKEN_FILE", tokenFile.toString());
    env.put("LEASEHOLD_CA_FILE", shared.resolve("ca.crt").toString());
    env.put("TF_IN_AUTOMATION", "1");
    env.put("CHECKPOINT_DISABLE", "1");
    env.put("TF_CLI_ARGS", "-no-color");
    env.put("TF_VAR_pipeline", pipeline);
    env.put("TF_VAR_state_address", stateUrl());
    Process p = pb.start();
    p.getOutputStream().close();
    String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor(2, TimeUnit.MINUTES)).as("%s: %s", pipeline, call).isTrue();
    return new Run(pipeline, call, p.exitValue(), output);
  }

  private static HttpResponse<String> send(String method, String url, String body)
      throws Exception {
    HttpClient http = TlsClients.trusting(ca.certificatePem(), Optional.empty());
    String basic =
        Base64.getEncoder().encodeToString("holder:holder-token".getBytes(StandardCharsets.UTF_8));
    return http.send(
        HttpRequest.newBuilder(URI.create(url))
            .method(
                method,
                body == null
                    ? HttpRequest.BodyPublishers.noBody()
                    : HttpRequest.BodyPublishers.ofString(body))
            .header("Authorization", "Basic " + basic)
            .timeout(Duration.ofSeconds(30))
            .build(),
        HttpResponse.BodyHandlers.ofString());
  }

  @Test
  @DisplayName(
      "Two pipelines at once on one state, each running the recipes' apply three times: both wait"
          + " in line, every terraform exits 0, no lock error, every apply's write is in the final"
          + " state and the serial advanced by the number of applies")
  void twoPipelinesAtOnce() throws Exception {
    List<String> applies = applyCalls(recipes());
    int perPipeline = 3;

    // The first write, so that each apply below reads the state it builds on.
    Run first = run(checkout("first"), "first", applies.get(0), "runner-token");
    assertThat(first.exitCode()).as(first.output()).isZero();
    JsonNode before = JSON.readTree(send("GET", stateUrl(), null).body());
    long serialBefore = before.path("serial").asLong();
    assertThat(before.at("/outputs/runs/value").toString()).isEqualTo("[\"first\"]");

    // Someone holds the lock while both pipelines start: both wait in line at once.
    LockInfo held =
        new LockInfo("ci-holder", "OperationTypeApply", "", "someone@laptop", "", "", "");
    assertThat(send("LOCK", stateUrl() + "/lock", held.toJson()).statusCode()).isEqualTo(200);
    Path a = checkout("a");
    Path b = checkout("b");
    CompletableFuture<List<Run>> pipelineA = pipeline(a, "a", applies, 0, perPipeline);
    CompletableFuture<List<Run>> pipelineB = pipeline(b, "b", applies, 2, perPipeline);
    await()
        .atMost(Duration.ofSeconds(60))
        .until(
            () ->
                LeaseLock.line(lease()).tickets().size() == 2
                    || pipelineA.isDone()
                    || pipelineB.isDone());
    assertThat(LeaseLock.line(lease()).tickets()).as("both pipelines wait in line").hasSize(2);
    assertThat(send("UNLOCK", stateUrl() + "/lock", held.toJson()).statusCode()).isEqualTo(200);

    List<Run> runs = new ArrayList<>(pipelineA.get(3, TimeUnit.MINUTES));
    runs.addAll(pipelineB.get(3, TimeUnit.MINUTES));
    assertThat(runs).hasSize(2 * perPipeline);
    for (Run r : runs) {
      assertThat(r.exitCode()).as("%s ran %s:%n%s", r.pipeline(), r.call(), r.output()).isZero();
      assertThat(r.output())
          .as(r.pipeline())
          .contains("Apply complete!")
          .doesNotContain("Error acquiring the state lock")
          .doesNotContain("Error releasing the state lock")
          .doesNotContain("Error:");
    }

    JsonNode after = JSON.readTree(send("GET", stateUrl(), null).body());
    assertThat(after.path("lineage").asText()).isEqualTo(before.path("lineage").asText());
    assertThat(after.path("serial").asLong())
        .as("one new version per apply")
        .isEqualTo(serialBefore + 2L * perPipeline);
    List<String> written = new ArrayList<>();
    after.at("/outputs/runs/value").forEach(v -> written.add(v.asText()));
    List<String> expected = new ArrayList<>(List.of("first"));
    for (String p : List.of("a", "b")) {
      for (int i = 1; i <= perPipeline; i++) {
        expected.add(p + "-" + i);
      }
    }
    assertThat(written)
        .as("every apply built on the one before it: none lost, none twice")
        .startsWith("first")
        .containsExactlyInAnyOrderElementsOf(expected);
    for (String p : List.of("a", "b")) {
      assertThat(written.stream().filter(w -> w.startsWith(p + "-")).toList())
          .as("pipeline %s's applies in its order", p)
          .containsExactly(p + "-1", p + "-2", p + "-3");
    }
    await()
        .atMost(Duration.ofSeconds(20))
        .until(
            () ->
                harness
                        .client()
                        .resources(TerraformState.class)
                        .inNamespace("infra")
                        .withName("network")
                        .get()
                        .getStatus()
                        .getState()
                        .getSerial()
                    == after.path("serial").asLong());

    // Each terraform waited on the server with ?wait=25s (its backend configuration, from the
    // script), authenticated with a token reviewed for the audience leasehold only.
    JsonNode backendConfig =
        JSON.readTree(Files.readString(a.resolve("infra/network/.terraform/terraform.tfstate")));
    assertThat(backendConfig.at("/backend/config/lock_address").asText())
        .isEqualTo(stateUrl() + "/lock?wait=25s");
    assertThat(backendConfig.toString()).doesNotContain("runner-token");
    assertThat(tokenReviews)
        .isNotEmpty()
        .allSatisfy(
            r -> assertThat(r.at("/spec/audiences").toString()).isEqualTo("[\"leasehold\"]"));
    assertThat(
            accessReviews.stream()
                .map(r -> r.at("/spec/user").asText())
                .collect(Collectors.toSet()))
        .contains(RUNNER);
  }

  private static CompletableFuture<List<Run>> pipeline(
      Path checkout, String name, List<String> applies, int offset, int count) {
    return CompletableFuture.supplyAsync(
        () -> {
          List<Run> runs = new ArrayList<>();
          try {
            for (int i = 1; i <= count; i++) {
              String call = applies.get((offset + i) % applies.size());
              runs.add(run(checkout, name + "-" + i, call, "runner-token"));
            }
          } catch (IOException e) {
            throw new IllegalStateException(e);
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
          }
          return runs;
        });
  }

  @Test
  @DisplayName(
      "A recipe's run that fails (a token for another audience, refused with 401) exits non-zero"
          + " and ends with the kubectl command that lists the state's Warnings")
  void failureNamesTheEventsCommand() throws Exception {
    String apply = applyCalls(recipes()).get(1);
    Run refused = run(checkout("refused"), "refused", apply, "vault-token");
    assertThat(refused.exitCode()).as(refused.output()).isNotZero();
    // Terraform's words for a 401.
    assertThat(refused.output()).contains("HTTP remote state endpoint requires auth");
    List<String> lines = refused.output().lines().toList();
    assertThat(lines.get(lines.size() - 1).trim()).isEqualTo(EVENTS_COMMAND);
    Matcher m = Pattern.compile("kubectl get events[^\\n]*").matcher(read("README.md"));
    assertThat(m.find()).as("examples/ci/README.md gives the same command").isTrue();
    assertThat(m.group().replace("`", "").trim()).isEqualTo(EVENTS_COMMAND);
  }
}
