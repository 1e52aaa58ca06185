package io.leasehold.e2e;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.api.TerraformState;
import io.leasehold.support.Binaries;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.Terraform;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Stock terraform with its http backend against leasehold on the embedded API. */
class HttpBackendE2ETest {

  private static OperatorHarness harness;
  private static String backendUrl;
  private static Path kubeconfig;

  @BeforeAll
  static void start(@TempDir Path shared) {
    Binaries.terraform();
    harness = OperatorHarness.start();
    backendUrl = harness.startBackend(256L * 1024 * 1024);
    kubeconfig = shared.resolve("kubeconfig");
    harness.api().writeKubeconfig(kubeconfig);
  }

  @AfterAll
  static void stop() {
    if (harness != null) {
      harness.close();
    }
  }

  private static String createState(String name) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(s).create();
    return backendUrl + NAMESPACE + "/" + name;
  }

  /**
   * A run that adds its own item on top of the items of the state it read (through a
   * terraform_remote_state read of the same address), as a real change on shared state would.
   */
  private static String accumulatingConfig(String url, String wait, String item) {
    return Terraform.httpBackend(url, wait)
        + """
        data "terraform_remote_state" "self" {
          backend = "http"
          config = {
            address = "%s"
          }
        }
        locals {
          items = sort(distinct(concat(try(data.terraform_remote_state.self.outputs.items, []), ["%s"])))
        }
        resource "terraform_data" "item" {
          for_each = toset(local.items)
          input    = each.key
        }
        output "items" {
          value = local.items
        }
        """
            .formatted(url, item);
  }

  private record Run(String item, Process process, Path dir) {}

  private static List<Run> startRuns(String url, String wait, int n, String... extra)
      throws Exception {
    // terraform_remote_state fails on a state that does not exist: one run seeds it (serial 1).
    Path seed = Files.createTempDirectory("seed");
    Terraform seeder = new Terraform(seed);
    seeder.writeConfig(Terraform.httpBackend(url, null) + "output \"items\" {\n  value = []\n}\n");
    seeder.run("init").assertOk();
    seeder.run("apply", "-auto-approve").assertOk();
    List<Run> runs = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      Path dir = Files.createTempDirectory("run");
      Terraform tf = new Terraform(dir);
      String item = "run-" + i;
      tf.writeConfig(accumulatingConfig(url, wait, item));
      tf.run("init").assertOk();
      runs.add(new Run(item, null, dir));
    }
    List<Run> started = new ArrayList<>();
    for (Run r : runs) {
      List<String> args = new ArrayList<>(List.of("apply", "-auto-approve"));
      args.addAll(List.of(extra));
      started.add(
          new Run(r.item(), new Terraform(r.dir()).start(args.toArray(String[]::new)), r.dir()));
    }
    return started;
  }

  private static JsonNode stored(String url, Path anyDir) throws Exception {
    return new ObjectMapper()
        .readTree(new Terraform(anyDir).run("state", "pull").assertOk().output());
  }

  private static Set<String> items(JsonNode state) {
    Set<String> items = new HashSet<>();
    state.path("outputs").path("items").path("value").forEach(v -> items.add(v.asText()));
    return items;
  }

  @Test
  @DisplayName(
      "When several applies start at once with -lock-timeout, then they run one after another"
          + " and every run's change is in the final state")
  void concurrentAppliesWithLockTimeout() throws Exception {
    String url = createState("race-timeout");
    List<Run> runs = startRuns(url, null, 3, "-lock-timeout=60s");
    for (Run r : runs) {
      String out = new String(r.process().getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      assertThat(r.process().waitFor(2, TimeUnit.MINUTES)).isTrue();
      assertThat(r.process().exitValue()).as(out).isZero();
    }
    JsonNode state = stored(url, runs.get(0).dir());
    assertThat(items(state)).containsExactlyInAnyOrder("run-0", "run-1", "run-2");
    assertThat(state.get("serial").asLong()).isEqualTo(1 + 3);
  }

  @Test
  @DisplayName(
      "When several applies start at once with ?wait= on the lock address, then each waits in"
          + " line on the server and every change is kept")
  void concurrentAppliesWithServerWait() throws Exception {
    String url = createState("race-wait");
    List<Run> runs = startRuns(url, "60s", 4);
    for (Run r : runs) {
      String out = new String(r.process().getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      assertThat(r.process().waitFor(2, TimeUnit.MINUTES)).isTrue();
      assertThat(r.process().exitValue()).as(out).isZero();
    }
    JsonNode state = stored(url, runs.get(0).dir());
    assertThat(items(state)).containsExactlyInAnyOrder("run-0", "run-1", "run-2", "run-3");
    assertThat(state.get("serial").asLong()).isEqualTo(1 + 4);
  }

  @Test
  @DisplayName(
      "When several applies run at once with -lock=false, then each either lands or fails"
          + " loudly: no run that exits 0 is missing from the final state")
  void lockFalseRunsNeverSilentlyLost() throws Exception {
    String url = createState("race-nolock");
    List<Run> runs = startRuns(url, null, 4, "-lock=false");
    List<String> landed = new ArrayList<>();
    List<String> failed = new ArrayList<>();
    for (Run r : runs) {
      String out = new String(r.process().getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      assertThat(r.process().waitFor(2, TimeUnit.MINUTES)).isTrue();
      if (r.process().exitValue() == 0) {
        landed.add(r.item());
      } else {
        failed.add(r.item());
        assertThat(out).containsIgnoringCase("error");
      }
    }
    JsonNode state = stored(url, runs.get(0).dir());
    assertThat(items(state)).containsAll(landed);
    assertThat(landed).isNotEmpty();
    System.out.printf("-lock=false race: landed %s, refused %s%n", landed, failed);
  }

  @Test
  @DisplayName(
      "terraform force-unlock releases a lock left by a killed apply; state pull and push work")
  void forceUnlockAndPullPush(@TempDir Path dir) throws Exception {
    String url = createState("crashed");
    Path release = dir.resolve("never");
    Terraform tf = new Terraform(dir);
    tf.writeConfig(
        Terraform.httpBackend(url, null)
            + """
            resource "terraform_data" "slow" {
              provisioner "local-exec" {
                command = "while [ ! -f %s ]; do sleep 0.1; done"
              }
            }
            """
                .formatted(release));
    tf.run("init").assertOk();
    Process apply = tf.start("apply", "-auto-approve");
    await()
        .atMost(Duration.ofSeconds(60))
        .until(
            () ->
                lease("crashed") != null && lease("crashed").getSpec().getHolderIdentity() != null);
    String lockId = lease("crashed").getSpec().getHolderIdentity();
    apply.destroyForcibly().waitFor();
    // A crashed holder's lock stays: nothing releases it on its behalf.
    await()
        .during(Duration.ofMillis(300))
        .atMost(Duration.ofSeconds(5))
        .until(() -> lockId.equals(lease("crashed").getSpec().getHolderIdentity()));

    Terraform.Result plan = tf.run("plan", "-lock-timeout=1s");
    assertThat(plan.exitCode()).isNotZero();
    assertThat(plan.output() + plan.errors()).contains("Error acquiring the state lock");

    tf.run("force-unlock", "-force", lockId).assertOk();
    assertThat(lease("crashed").getSpec().getHolderIdentity()).isNull();

    Files.writeString(release, "go");
    tf.run("apply", "-auto-approve").assertOk();
    String pulled = tf.run("state", "pull").assertOk().output();
    JsonNode state = new ObjectMapper().readTree(pulled);
    long serial = state.get("serial").asLong();
    ((com.fasterxml.jackson.databind.node.ObjectNode) state).put("serial", serial + 1);
    Path pushed = dir.resolve("pushed.tfstate");
    Files.writeString(pushed, state.toString());
    tf.run("state", "push", pushed.toString()).assertOk();
    JsonNode after = new ObjectMapper().readTree(tf.run("state", "pull").assertOk().output());
    assertThat(after.get("serial").asLong()).isGreaterThan(serial);
    assertThat(after.get("lineage").asText()).isEqualTo(state.get("lineage").asText());
  }

  private static Lease lease(String name) {
    return harness
        .client()
        .leases()
        .inNamespace(NAMESPACE)
        .withName("lock-tfstate-default-" + name)
        .get();
  }

  @Test
  @DisplayName("terraform init -migrate-state moves a local state into leasehold unchanged")
  void migrateLocalState(@TempDir Path dir) throws Exception {
    String url = createState("migrated");
    Terraform tf = new Terraform(dir);
    String resources =
        """
        resource "terraform_data" "kept" {
          input = "from-local"
        }
        """;
    tf.writeConfig(resources);
    tf.run("init").assertOk();
    tf.run("apply", "-auto-approve").assertOk();
    JsonNode local =
        new ObjectMapper().readTree(Files.readString(dir.resolve("terraform.tfstate")));

    tf.writeConfig(Terraform.httpBackend(url, null) + resources);
    tf.run("init", "-migrate-state", "-force-copy").assertOk();

    // Terraform 1.11 gives a state migrated into an empty http backend a new lineage (into its
    // kubernetes backend it keeps it); the resources are what must arrive unchanged.
    JsonNode remote = stored(url, dir);
    assertThat(remote.get("resources")).isEqualTo(local.get("resources"));
    Terraform.Result plan = tf.run("plan", "-detailed-exitcode");
    assertThat(plan.exitCode()).as(plan.output()).isZero();
  }

  @Test
  @DisplayName(
      "Stock kubernetes-backend Terraform reads a >1 MiB state written through the HTTP backend,"
          + " and the HTTP backend reads what it writes back; each is blocked by the other's lock")
  void interopWithKubernetesBackend(@TempDir Path httpDir, @TempDir Path k8sDir) throws Exception {
    String url = createState("both-ways");
    byte[] noise = new byte[1_200_000];
    new SecureRandom().nextBytes(noise);
    String blob = Base64.getEncoder().encodeToString(noise);
    Files.writeString(httpDir.resolve("big.auto.tfvars.json"), "{\"blob\":\"" + blob + "\"}");
    Files.writeString(k8sDir.resolve("big.auto.tfvars.json"), "{\"blob\":\"" + blob + "\"}");
    String body =
        """
        variable "blob" {}
        variable "extra" {
          default = "none"
        }
        resource "terraform_data" "big" {
          input = var.blob
        }
        resource "terraform_data" "extra" {
          input = var.extra
        }
        """;
    Terraform http = new Terraform(httpDir);
    http.writeConfig(Terraform.httpBackend(url, null) + body);
    http.run("init").assertOk();
    http.run("apply", "-auto-approve").assertOk();
    assertThat(
            harness
                .client()
                .secrets()
                .inNamespace(NAMESPACE)
                .withName("tfstate-default-both-ways-part-1")
                .get())
        .as("a state over 1 MiB gzip'd is chunked like Terraform chunks it")
        .isNotNull();

    Terraform k8s =
        Terraform.hashicorp(
            k8sDir,
            "Terraform's kubernetes backend reads and writes chunked states; OpenTofu's reads one"
                + " Secret only");
    k8s.writeKubernetesBackendConfig(kubeconfig, "both-ways", body);
    k8s.run("init").assertOk();
    Terraform.Result plan = k8s.run("plan", "-detailed-exitcode");
    assertThat(plan.exitCode()).as(plan.output() + plan.errors()).isZero();
    k8s.run("apply", "-auto-approve", "-var", "extra=from-k8s").assertOk();

    JsonNode viaHttp = stored(url, httpDir);
    assertThat(viaHttp.toString()).contains("from-k8s");
    Terraform.Result httpPlan = http.run("plan", "-detailed-exitcode", "-var", "extra=from-k8s");
    assertThat(httpPlan.exitCode()).as(httpPlan.output() + httpPlan.errors()).isZero();

    // The kubernetes-backend client holds the lock: the HTTP client is refused, and back.
    Path gate = k8sDir.resolve("gate");
    Files.writeString(
        k8sDir.resolve("slow.tf"),
        """
        resource "terraform_data" "slow" {
          input = "x"
          provisioner "local-exec" {
            command = "while [ ! -f %s ]; do sleep 0.1; done"
          }
        }
        """
            .formatted(gate));
    Process holding = k8s.start("apply", "-auto-approve", "-var", "extra=from-k8s");
    await()
        .atMost(Duration.ofSeconds(60))
        .until(() -> lease("both-ways").getSpec().getHolderIdentity() != null);
    Terraform.Result blocked = http.run("plan", "-lock-timeout=1s", "-var", "extra=from-k8s");
    assertThat(blocked.exitCode()).isNotZero();
    assertThat(blocked.output() + blocked.errors()).contains("Error acquiring the state lock");
    Files.writeString(gate, "go");
    assertThat(holding.waitFor(2, TimeUnit.MINUTES)).isTrue();
    assertThat(holding.exitValue()).isZero();

    Files.delete(gate);
    // A resource the state does not have yet, so that this apply runs its slow provisioner and
    // holds the lock while the other client tries (the first half's "slow" is already applied).
    Files.writeString(
        httpDir.resolve("slow.tf"),
        Files.readString(k8sDir.resolve("slow.tf"))
            .replace(k8sDir.toString(), httpDir.toString())
            .replace("\"slow\"", "\"slow_http\""));
    Path httpGate = httpDir.resolve("gate");
    Process httpHolding = http.start("apply", "-auto-approve", "-var", "extra=from-k8s");
    await()
        .atMost(Duration.ofSeconds(60))
        .until(() -> lease("both-ways").getSpec().getHolderIdentity() != null);
    Terraform.Result k8sBlocked = k8s.run("plan", "-lock-timeout=1s", "-var", "extra=from-k8s");
    assertThat(k8sBlocked.exitCode()).isNotZero();
    assertThat(k8sBlocked.output() + k8sBlocked.errors())
        .contains("Error acquiring the state lock");
    Files.writeString(httpGate, "go");
    assertThat(httpHolding.waitFor(2, TimeUnit.MINUTES)).isTrue();
  }
}
