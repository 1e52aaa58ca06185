package io.leasehold.e2e;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.leasehold.api.TerraformState;
import io.leasehold.support.Binaries;
import io.leasehold.support.Kubectl;
import io.leasehold.support.OperatorHarness;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * The real kubectl against the embedded API with the operator running: every command the README and
 * users rely on works as against a cluster.
 */
class KubectlE2ETest {

  private static final Path EXAMPLES =
      Path.of(System.getProperty("leasehold.projectRoot"), "examples", "quickstart");

  private static OperatorHarness harness;
  private static Kubectl kubectl;
  private static String backend;
  private static Path dir;

  @BeforeAll
  static void start() throws IOException {
    Binaries.kubectl();
    harness = OperatorHarness.start();
    backend = harness.startBackend(16L * 1024 * 1024);
    dir = Files.createTempDirectory("leasehold-kubectl");
    Path kubeconfig = dir.resolve("kubeconfig");
    harness.api().writeKubeconfig(kubeconfig);
    kubectl = new Kubectl(kubeconfig);
  }

  @AfterAll
  static void stop() {
    if (harness != null) {
      harness.close();
    }
  }

  private static String state(String name) {
    return """
        apiVersion: leasehold.io/v1alpha1
        kind: TerraformState
        metadata:
          name: %s
        spec:
          history:
            keep: 3
        """
        .formatted(name);
  }

  private static void createState(String name) throws Exception {
    kubectl.runWithInput(state(name), "apply", "-f", "-").assertOk();
    await()
        .atMost(Duration.ofSeconds(20))
        .until(() -> harness.get(name) != null && harness.get(name).getStatus() != null);
  }

  /** Takes the state's lock through the HTTP backend, as a terraform that then died would. */
  private static String lock(String name, String who) throws Exception {
    String id = UUID.randomUUID().toString();
    String info =
        """
        {"ID":"%s","Operation":"OperationTypeApply","Info":"","Who":"%s","Version":"1.11.4",\
        "Created":"2026-01-01T00:00:00Z","Path":""}"""
            .formatted(id, who);
    HttpResponse<String> response =
        HttpClient.newHttpClient()
            .send(
                HttpRequest.newBuilder(URI.create(backend + "default/" + name + "/lock"))
                    .method("LOCK", HttpRequest.BodyPublishers.ofString(info))
                    .header("Content-Type", "application/json")
                    .build(),
                HttpResponse.BodyHandlers.ofString());
    assertThat(response.statusCode()).as(response.body()).isEqualTo(200);
    return id;
  }

  @Test
  @DisplayName("kubectl version reads the server's version; the default namespace exists")
  void version() throws Exception {
    String out = kubectl.run("version", "-o", "json").assertOk().output();
    assertThat(out).contains("\"serverVersion\"").contains("\"gitVersion\": \"v1.32.");
    assertThat(kubectl.run("get", "namespace", "default").assertOk().output())
        .containsPattern("default\\s+Active");
  }

  @Test
  @DisplayName(
      "kubectl api-resources lists TerraformStates with their short names beside the built-in"
          + " resources the operator uses, and the short names and the category work")
  void apiResources() throws Exception {
    String out = kubectl.run("api-resources").assertOk().output();
    assertThat(out)
        .containsPattern(
            "terraformstates\\s+tfstate,tfs\\s+leasehold.io/v1alpha1\\s+true\\s+TerraformState")
        .containsPattern("jobs\\s+batch/v1\\s+true\\s+Job")
        .containsPattern("leases\\s+coordination.k8s.io/v1\\s+true\\s+Lease")
        .containsPattern("events\\s+ev\\s+v1\\s+true\\s+Event");
    assertThat(kubectl.run("api-resources", "--api-group=leasehold.io", "-o", "wide").output())
        .contains("create,delete,deletecollection,get,list,patch,update,watch");
    createState("short-names");
    assertThat(kubectl.run("get", "tfs", "short-names").assertOk().output())
        .contains("short-names");
    assertThat(kubectl.run("get", "leasehold", "-o", "name").assertOk().output())
        .as("the leasehold category")
        .contains("terraformstate.leasehold.io/short-names");
  }

  @Test
  @DisplayName(
      "kubectl get prints the CRD's printer columns for TerraformStates, with the holder, and the"
          + " usual columns for Jobs and Events; -o yaml and -o jsonpath print the object")
  void getColumnsYamlAndJsonpath() throws Exception {
    createState("columns");
    lock("columns", "alice@laptop");
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () ->
                assertThat(kubectl.run("get", "tfstate", "columns").assertOk().output())
                    .containsPattern(
                        "NAME\\s+WORKSPACE\\s+HOLDER\\s+HOLDERS\\s+QUEUED\\s+HELD\\s+SERIAL\\s+RESOURCES\\s+AGE\n")
                    .containsPattern(
                        "columns\\s+default\\s+alice@laptop \\(apply\\)\\s+1\\s+0\\s+false\\s+\\d+s"));
    assertThat(kubectl.run("get", "tfstate", "columns", "-o", "wide").assertOk().output())
        .containsPattern(
            "HOLDER\\s+HOLDERS\\s+QUEUED\\s+HELD\\s+SERIAL\\s+RESOURCES\\s+READY\\s+AGE");

    String yaml = kubectl.run("get", "tfstate", "columns", "-o", "yaml").assertOk().output();
    assertThat(yaml)
        .contains("apiVersion: leasehold.io/v1alpha1")
        .contains("kind: TerraformState")
        .contains("name: columns")
        .contains("keep: 3");
    assertThat(
            kubectl
                .run("get", "tfstate", "columns", "-o", "jsonpath={.status.lock.who}")
                .assertOk()
                .output())
        .isEqualTo("alice@laptop");

    assertThat(kubectl.run("get", "events").assertOk().output())
        .containsPattern("LAST SEEN\\s+TYPE\\s+REASON\\s+OBJECT\\s+MESSAGE")
        .containsPattern("Normal\\s+LockTaken\\s+terraformstate/columns");
    kubectl.run("apply", "-f", EXAMPLES.resolve("runner-config.yaml").toString()).assertOk();
    kubectl.run("create", "-f", EXAMPLES.resolve("runner-job.yaml").toString()).assertOk();
    assertThat(kubectl.run("get", "jobs").assertOk().output())
        .containsPattern("NAME\\s+STATUS\\s+COMPLETIONS\\s+DURATION\\s+AGE")
        .containsPattern("quickstart-apply-\\w{5}\\s+\\w+\\s+0/1");
  }

  @Test
  @DisplayName("kubectl describe shows a TerraformState's status and the Events recorded on it")
  void describeWithEvents() throws Exception {
    createState("described");
    lock("described", "bob@ci");
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () ->
                assertThat(kubectl.run("describe", "tfstate", "described").assertOk().output())
                    .contains("Name:         described")
                    .contains("Kind:         TerraformState")
                    .containsPattern("Events:\\s+Type\\s+Reason\\s+Age\\s+From\\s+Message")
                    .containsPattern("Normal\\s+LockTaken\\s+\\S+\\s+leasehold\\s+lock .* bob@ci"));
  }

  @Test
  @DisplayName(
      "kubectl create -f makes a new runner Job each time from its generateName, and kubectl"
          + " describe shows why it waits or runs")
  void createTwice() throws Exception {
    createState("quickstart");
    kubectl.run("apply", "-f", EXAMPLES.resolve("runner-config.yaml").toString()).assertOk();
    String job = EXAMPLES.resolve("runner-job.yaml").toString();
    String first = kubectl.run("create", "-f", job, "-o", "name").assertOk().output().trim();
    String second = kubectl.run("create", "-f", job, "-o", "name").assertOk().output().trim();
    Pattern generated =
        Pattern.compile("job\\.batch/quickstart-apply-[bcdfghjklmnpqrstvwxz2-9]{5}");
    assertThat(first).matches(generated);
    assertThat(second).matches(generated).isNotEqualTo(first);
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () ->
                assertThat(kubectl.run("describe", second).assertOk().output())
                    .containsPattern("Normal\\s+Queued\\s+.*position"));
  }

  @Test
  @DisplayName(
      "kubectl apply -f creates, then leaves an unchanged object alone, then changes only what the"
          + " file changed, for a built-in and a custom resource")
  void applyTwice() throws Exception {
    String config = EXAMPLES.resolve("runner-config.yaml").toString();
    String configMap =
        Files.readString(EXAMPLES.resolve("runner-config.yaml"))
            .replace("quickstart-terraform", "applied-terraform");
    assertThat(kubectl.runWithInput(configMap, "apply", "-f", "-").assertOk().output())
        .contains("configmap/applied-terraform created");
    assertThat(kubectl.runWithInput(configMap, "apply", "-f", "-").assertOk().output())
        .contains("configmap/applied-terraform unchanged");
    assertThat(
            kubectl
                .runWithInput(configMap.replace("hello from", "goodbye from"), "apply", "-f", "-")
                .assertOk()
                .output())
        .contains("configmap/applied-terraform configured");
    assertThat(
            harness
                .client()
                .configMaps()
                .inNamespace("default")
                .withName("applied-terraform")
                .get()
                .getData()
                .get("main.tf"))
        .contains("goodbye from a queued runner");
    assertThat(config).isNotEmpty();

    assertThat(kubectl.runWithInput(state("applied"), "apply", "-f", "-").assertOk().output())
        .contains("terraformstate.leasehold.io/applied created");
    assertThat(kubectl.runWithInput(state("applied"), "apply", "-f", "-").assertOk().output())
        .contains("terraformstate.leasehold.io/applied unchanged");
    assertThat(
            kubectl
                .runWithInput(state("applied").replace("keep: 3", "keep: 7"), "apply", "-f", "-")
                .assertOk()
                .output())
        .contains("terraformstate.leasehold.io/applied configured");
    assertThat(harness.get("applied").getSpec().getHistory().getKeep()).isEqualTo(7);
  }

  @Test
  @DisplayName(
      "kubectl annotate leasehold.io/force-unlock=ID releases a lock left by a dead client, and"
          + " annotate KEY- removes the annotation")
  void forceUnlockByAnnotation() throws Exception {
    createState("stuck");
    String id = lock("stuck", "carol@laptop");
    await()
        .atMost(Duration.ofSeconds(20))
        .until(() -> "carol@laptop (apply)".equals(harness.status("stuck").getHolder()));

    kubectl.run("annotate", "tfstate", "stuck", "leasehold.io/force-unlock=" + id).assertOk();

    kubectl
        .run("wait", "--for=condition=Locked=false", "tfstate/stuck", "--timeout=30s")
        .assertOk();
    assertThat(harness.get("stuck").getStatus().getHolder()).isNullOrEmpty();
    assertThat(harness.events("stuck")).anyMatch(e -> e.contains("ForceUnlocked"));

    kubectl.run("annotate", "tfstate", "stuck", "leasehold.io/force-unlock-").assertOk();
    assertThat(harness.get("stuck").getMetadata().getAnnotations())
        .doesNotContainKey("leasehold.io/force-unlock");
  }

  @Test
  @DisplayName(
      "kubectl label KEY=VALUE and KEY- add and remove a label on a custom resource (merge patch)"
          + " and on a Job (strategic merge patch), leaving no null behind")
  void labelAndUnlabel() throws Exception {
    createState("labelled");
    kubectl.run("label", "tfstate", "labelled", "team=infra").assertOk();
    assertThat(kubectl.run("get", "tfstate", "-l", "team=infra", "-o", "name").assertOk().output())
        .contains("terraformstate.leasehold.io/labelled");
    kubectl.run("label", "tfstate", "labelled", "team-").assertOk();
    assertThat(harness.get("labelled").getMetadata().getLabels()).doesNotContainKey("team");
    assertThat(
            kubectl.run("get", "tfstate", "labelled", "-o", "jsonpath={.metadata.labels}").output())
        .doesNotContain("team");

    kubectl.run("apply", "-f", EXAMPLES.resolve("runner-config.yaml").toString()).assertOk();
    String job =
        kubectl
            .run("create", "-f", EXAMPLES.resolve("runner-job.yaml").toString(), "-o", "name")
            .assertOk()
            .output()
            .trim();
    kubectl.run("label", job, "run=nightly").assertOk();
    kubectl.run("label", job, "run-").assertOk();
    Job stored =
        harness
            .client()
            .batch()
            .v1()
            .jobs()
            .inNamespace("default")
            .withName(job.substring(10))
            .get();
    assertThat(stored.getMetadata().getLabels())
        .containsEntry("leasehold.io/state", "quickstart")
        .doesNotContainKey("run");
  }

  @Test
  @DisplayName(
      "kubectl wait --for=condition=Complete returns when the Job's status is patched"
          + " (patch --subresource=status), and the lock it held is released")
  void patchStatusAndWait() throws Exception {
    createState("waited");
    kubectl.run("apply", "-f", EXAMPLES.resolve("runner-config.yaml").toString()).assertOk();
    String manifest =
        Files.readString(EXAMPLES.resolve("runner-job.yaml"))
            .replace("leasehold.io/state: quickstart", "leasehold.io/state: waited");
    String job =
        kubectl
            .runWithInput(manifest, "create", "-f", "-", "-o", "name")
            .assertOk()
            .output()
            .trim();
    kubectl.run("wait", "--for=condition=Locked", "tfstate/waited", "--timeout=30s").assertOk();

    Process waiting = kubectl.start("wait", "--for=condition=Complete", job, "--timeout=60s");
    AtomicReference<String> waited = new AtomicReference<>("");
    Thread reader = new Thread(() -> waited.set(read(waiting.getInputStream())));
    reader.start();
    assertThat(waiting.waitFor(2, TimeUnit.SECONDS)).as("wait returned early").isFalse();

    kubectl
        .run(
            "patch",
            job,
            "--subresource=status",
            "-p",
            "{\"status\":{\"succeeded\":1,\"conditions\":[{\"type\":\"Complete\",\"status\":\"True\"}]}}")
        .assertOk();

    assertThat(waiting.waitFor(30, TimeUnit.SECONDS)).isTrue();
    reader.join();
    assertThat(waiting.exitValue()).isZero();
    assertThat(waited.get()).contains("condition met");
    kubectl
        .run("wait", "--for=condition=Locked=false", "tfstate/waited", "--timeout=30s")
        .assertOk();
    assertThat(kubectl.run("get", job).assertOk().output()).containsPattern("Complete\\s+1/1");
  }

  @Test
  @DisplayName(
      "kubectl delete removes a TerraformState and waits until it is gone, and deleting a Job"
          + " deletes the Pods it owns")
  void delete() throws Exception {
    createState("doomed");
    assertThat(kubectl.run("delete", "tfstate", "doomed", "--timeout=30s").assertOk().output())
        .contains("terraformstate.leasehold.io \"doomed\" deleted");
    assertThat(harness.get("doomed")).isNull();
    assertThat(kubectl.run("get", "tfstate", "doomed").errors())
        .contains("terraformstates.leasehold.io \"doomed\" not found");

    kubectl.run("apply", "-f", EXAMPLES.resolve("runner-config.yaml").toString()).assertOk();
    String job =
        kubectl
            .run("create", "-f", EXAMPLES.resolve("runner-job.yaml").toString(), "-o", "name")
            .assertOk()
            .output()
            .trim();
    Job created =
        harness
            .client()
            .batch()
            .v1()
            .jobs()
            .inNamespace("default")
            .withName(job.substring(10))
            .get();
    String pod =
        """
        apiVersion: v1
        kind: Pod
        metadata:
          name: %s-pod
          ownerReferences:
          - apiVersion: batch/v1
            kind: Job
            name: %s
            uid: %s
            controller: true
        spec:
          containers:
          - name: terraform
            image: hashicorp/terraform:1.11
        """
            .formatted(
                created.getMetadata().getName(),
                created.getMetadata().getName(),
                created.getMetadata().getUid());
    kubectl.runWithInput(pod, "create", "-f", "-").assertOk();
    kubectl.run("delete", job, "--timeout=30s").assertOk();
    Pod left =
        harness
            .client()
            .pods()
            .inNamespace("default")
            .withName(created.getMetadata().getName() + "-pod")
            .get();
    assertThat(left).as("the Job's Pod, deleted with it").isNull();
  }

  @Test
  @DisplayName("kubectl get -w prints a TerraformState's changes as they happen")
  void watch() throws Exception {
    createState("watched");
    Process watching = kubectl.start("get", "tfstate", "watched", "-w", "--output-watch-events");
    StringBuilder out = new StringBuilder();
    Thread reader =
        new Thread(
            () -> {
              try (InputStream in = watching.getInputStream()) {
                byte[] buffer = new byte[4096];
                int n;
                while ((n = in.read(buffer)) > 0) {
                  synchronized (out) {
                    out.append(new String(buffer, 0, n, StandardCharsets.UTF_8));
                  }
                }
              } catch (IOException e) {
                // The watch was stopped.
              }
            });
    reader.start();
    try {
      await().atMost(Duration.ofSeconds(20)).until(() -> snapshot(out).contains("ADDED"));
      lock("watched", "dave@laptop");
      await()
          .atMost(Duration.ofSeconds(20))
          .untilAsserted(
              () ->
                  assertThat(snapshot(out))
                      .containsPattern("MODIFIED\\s+watched\\s+default\\s+dave@laptop"));
      assertThat(snapshot(out)).containsOnlyOnce("WORKSPACE");
    } finally {
      watching.destroy();
      watching.waitFor(10, TimeUnit.SECONDS);
    }
  }

  private static String snapshot(StringBuilder out) {
    synchronized (out) {
      return out.toString();
    }
  }

  private static String read(InputStream in) {
    try {
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    } catch (IOException e) {
      return "";
    }
  }

  @Test
  @DisplayName(
      "kubectl create -f refuses a runner Job with a misspelled field (spec.supend) instead of"
          + " storing a Job that would run unqueued, as an API server does")
  void strictFieldValidationOfBuiltIns() throws Exception {
    String manifest =
        Files.readString(EXAMPLES.resolve("runner-job.yaml"))
            .replace("suspend: true", "supend: true")
            .replace("generateName: quickstart-apply-", "generateName: misspelled-");
    Kubectl.Result refused = kubectl.runWithInput(manifest, "create", "-f", "-");
    assertThat(refused.exitCode()).isNotZero();
    assertThat(refused.errors())
        .contains("Job in version \"v1\" cannot be handled as a Job")
        .contains("unknown field \"spec.supend\"");
    assertThat(harness.client().batch().v1().jobs().inNamespace("default").list().getItems())
        .noneMatch(j -> j.getMetadata().getName().startsWith("misspelled-"));
  }

  @Test
  @DisplayName(
      "kubectl --dry-run=server checks a create, a change and a delete and stores nothing; kubectl"
          + " auth can-i says everything is allowed")
  void serverDryRunAndCanI() throws Exception {
    createState("dry");
    assertThat(
            kubectl
                .runWithInput(state("dry-new"), "create", "-f", "-", "--dry-run=server")
                .assertOk()
                .output())
        .contains("terraformstate.leasehold.io/dry-new created (server dry run)");
    assertThat(harness.get("dry-new")).isNull();
    assertThat(
            kubectl
                .runWithInput(
                    state("dry-new").replace("keep: 3", "keep: 1000"),
                    "create",
                    "-f",
                    "-",
                    "--dry-run=server")
                .errors())
        .as("a dry run is validated")
        .contains("spec.history.keep");

    kubectl
        .runWithInput(
            state("dry").replace("keep: 3", "keep: 9"), "apply", "-f", "-", "--dry-run=server")
        .assertOk();
    kubectl.run("label", "tfstate", "dry", "x=y", "--dry-run=server").assertOk();
    assertThat(harness.get("dry").getSpec().getHistory().getKeep()).isEqualTo(3);
    assertThat(harness.get("dry").getMetadata().getLabels()).isNullOrEmpty();

    assertThat(kubectl.run("delete", "tfstate", "dry", "--dry-run=server").assertOk().output())
        .contains("deleted (server dry run)");
    assertThat(harness.get("dry")).isNotNull();

    assertThat(kubectl.run("auth", "can-i", "delete", "jobs").assertOk().output().trim())
        .isEqualTo("yes");
  }

  @Test
  @DisplayName(
      "kubectl create configmap (a protobuf body) is refused with a message showing the YAML"
          + " route, and that route works")
  void imperativeCreate() throws Exception {
    Kubectl.Result refused = kubectl.run("create", "configmap", "imperative", "--from-literal=a=b");
    assertThat(refused.exitCode()).isNotZero();
    assertThat(refused.errors())
        .contains("reads JSON bodies, not protobuf")
        .contains("--dry-run=client -o yaml | kubectl create -f -");
    String yaml =
        kubectl
            .run(
                "create",
                "configmap",
                "imperative",
                "--from-literal=a=b",
                "--dry-run=client",
                "-o",
                "yaml")
            .assertOk()
            .output();
    kubectl.runWithInput(yaml, "create", "-f", "-").assertOk();
    assertThat(
            harness
                .client()
                .configMaps()
                .inNamespace("default")
                .withName("imperative")
                .get()
                .getData())
        .containsEntry("a", "b");
  }

  @Test
  @DisplayName("A TerraformState created by kubectl create -f is the one the operator reconciles")
  void createCustomResource() throws Exception {
    Path file = dir.resolve("created.yaml");
    Files.writeString(file, state("created-by-kubectl"));
    assertThat(kubectl.run("create", "-f", file.toString()).assertOk().output())
        .contains("terraformstate.leasehold.io/created-by-kubectl created");
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () -> {
              TerraformState s = harness.get("created-by-kubectl");
              assertThat(s.getStatus()).isNotNull();
              assertThat(s.getStatus().getObservedGeneration()).isEqualTo(1L);
            });
    assertThat(kubectl.run("create", "-f", file.toString()).errors())
        .contains("terraformstates.leasehold.io \"created-by-kubectl\" already exists");
    Files.writeString(file, state("bad-spec").replace("keep: 3", "keep: 3\n  nonsense: true"));
    assertThat(kubectl.run("create", "-f", file.toString()).errors())
        .contains("unknown field \"spec.nonsense\"");
  }
}
