package io.leasehold.e2e;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.api.model.Secret;
import io.leasehold.api.QueueEntry;
import io.leasehold.api.StateFacts;
import io.leasehold.api.TerraformState;
import io.leasehold.api.TerraformStateStatus;
import io.leasehold.support.BackendHttp;
import io.leasehold.support.Binaries;
import io.leasehold.support.OpenTofuStates;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.Terraform;
import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.zip.GZIPInputStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The real {@code tofu} (OpenTofu, built by {@code hack/tools.sh tofu}) against the operator on the
 * embedded API: through leasehold's HTTP backend, with its own {@code kubernetes} backend reading
 * what leasehold wrote, and with client-side state encryption.
 */
class OpenTofuE2ETest {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static final String PASSPHRASE = "correct horse battery staple";
  private static final String SECRET = "s3cr3t-value";

  /**
   * OpenTofu's client-side encryption of the state: pbkdf2 passphrase (the fewest iterations it
   * allows, to keep every command quick), AES-GCM, enforced.
   */
  private static final String ENCRYPTION =
      """
      terraform {
        encryption {
          key_provider "pbkdf2" "passphrase" {
            passphrase = "%s"
            iterations = 200000
          }
          method "aes_gcm" "sealed" {
            keys = key_provider.pbkdf2.passphrase
          }
          state {
            method   = method.aes_gcm.sealed
            enforced = true
          }
        }
      }
      """
          .formatted(PASSPHRASE);

  private static final String SECRET_CONFIG =
      """
      resource "terraform_data" "secret" {
        input = "%s"
      }
      output "secret" {
        value = terraform_data.secret.output
      }
      """
          .formatted(SECRET);

  private static OperatorHarness harness;
  private static String backendUrl;
  private static BackendHttp backend;
  private static Path kubeconfig;

  @BeforeAll
  static void start(@TempDir Path shared) {
    Binaries.tofu();
    harness = OperatorHarness.start();
    backendUrl = harness.startBackend(64L * 1024 * 1024);
    backend = new BackendHttp(backendUrl);
    kubeconfig = shared.resolve("kubeconfig");
    harness.api().writeKubeconfig(kubeconfig);
  }

  @AfterAll
  static void stop() {
    if (harness != null) {
      harness.close();
    }
  }

  private static String createState(String name, boolean encryptionRequired) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    s.getSpec().getEncryption().setRequired(encryptionRequired);
    harness.client().resource(s).create();
    await()
        .atMost(Duration.ofSeconds(20))
        .until(() -> harness.status(name).getObservedGeneration() != null);
    return backendUrl + NAMESPACE + "/" + name;
  }

  /** tofu's own kubernetes backend on the embedded API, for the state {@code suffix}. */
  private static String kubernetesBackend(String suffix) {
    return """
        terraform {
          backend "kubernetes" {
            secret_suffix = "%s"
            config_path   = "%s"
            namespace     = "%s"
            insecure      = true
          }
        }
        """
        .formatted(suffix, kubeconfig.toAbsolutePath(), NAMESPACE);
  }

  /**
   * A run that adds {@code item} to the items of the state it read (terraform_remote_state of the
   * same address), slowly enough that two runs started at once overlap.
   */
  private static String accumulating(String url, String item) {
    return Terraform.httpBackend(url, "60s")
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
          provisioner "local-exec" {
            command = "sleep 2"
          }
        }
        output "items" {
          value = local.items
        }
        """
            .formatted(url, item);
  }

  private static Set<String> items(JsonNode state) {
    Set<String> items = new HashSet<>();
    state.path("outputs").path("items").path("value").forEach(v -> items.add(v.asText()));
    return items;
  }

  /** The state as stored in its Secret (gunzipped), exactly as a client sent it. */
  private static String stored(String name) throws Exception {
    Secret secret =
        harness.client().secrets().inNamespace(NAMESPACE).withName("tfstate-default-" + name).get();
    byte[] gzip = Base64.getDecoder().decode(secret.getData().get("tfstate"));
    try (GZIPInputStream in = new GZIPInputStream(new ByteArrayInputStream(gzip))) {
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    }
  }

  private static List<String> keys(JsonNode node) {
    List<String> keys = new ArrayList<>();
    for (Iterator<String> it = node.fieldNames(); it.hasNext(); ) {
      keys.add(it.next());
    }
    return keys;
  }

  @Test
  @DisplayName(
      "tofu init and apply through leasehold's HTTP backend store the state; a second apply plans"
          + " on the first (no change, then one change) and writes the next serial")
  void applyThroughTheHttpBackend(@TempDir Path dir) throws Exception {
    String url = createState("tofu-apply", false);
    Terraform tofu = Terraform.tofu(dir);
    String resources =
        """
        variable "greeting" {
          default = "hello"
        }
        resource "terraform_data" "r" {
          input = var.greeting
        }
        output "greeting" {
          value = terraform_data.r.output
        }
        """;
    tofu.writeConfig(Terraform.httpBackend(url, "30s") + resources);
    tofu.run("init", "-input=false").assertOk();
    tofu.run("apply", "-auto-approve", "-input=false").assertOk();
    JsonNode first = JSON.readTree(backend.get(NAMESPACE + "/tofu-apply").body());
    assertThat(first.get("serial").asLong()).isEqualTo(1);
    assertThat(first.get("terraform_version").asText())
        .as("written by OpenTofu")
        .isEqualTo(tofu.binary().version().replaceFirst("^OpenTofu v", ""));

    Terraform.Result unchanged = tofu.run("plan", "-detailed-exitcode", "-input=false");
    assertThat(unchanged.exitCode()).as(unchanged.output() + unchanged.errors()).isZero();
    Terraform.Result changed =
        tofu.run("plan", "-detailed-exitcode", "-input=false", "-var", "greeting=again");
    assertThat(changed.exitCode()).as("one change planned on the stored state").isEqualTo(2);
    assertThat(changed.output()).contains("1 to change");
    tofu.run("apply", "-auto-approve", "-input=false", "-var", "greeting=again").assertOk();

    JsonNode second = JSON.readTree(backend.get(NAMESPACE + "/tofu-apply").body());
    assertThat(second.get("serial").asLong()).isEqualTo(2);
    assertThat(second.get("lineage").asText()).isEqualTo(first.get("lineage").asText());
    assertThat(tofu.run("output", "-raw", "greeting").assertOk().output()).isEqualTo("again");
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () -> {
              StateFacts facts = harness.facts("tofu-apply");
              assertThat(facts.getSerial()).isEqualTo(2);
              assertThat(facts.getResources()).isEqualTo(1);
              assertThat(facts.getTerraformVersion())
                  .isEqualTo(first.get("terraform_version").asText());
              assertThat(facts.encrypted()).isFalse();
              assertThat(harness.status("tofu-apply").getHolder()).isNull();
            });
  }

  @Test
  @DisplayName(
      "Two tofu applies started at once with ?wait= run one after another: the second waits in"
          + " line on the server, each adds its change, and the serial goes up by one each")
  void twoAppliesTakeTurns(@TempDir Path dir) throws Exception {
    String url = createState("tofu-race", false);
    Terraform seed = Terraform.tofu(Files.createDirectories(dir.resolve("seed")));
    seed.writeConfig(Terraform.httpBackend(url, null) + "output \"items\" {\n  value = []\n}\n");
    seed.run("init", "-input=false").assertOk();
    seed.run("apply", "-auto-approve", "-input=false").assertOk();
    long seeded =
        JSON.readTree(backend.get(NAMESPACE + "/tofu-race").body()).get("serial").asLong();

    List<Terraform> runs = new ArrayList<>();
    for (String item : List.of("alice", "bob")) {
      Terraform tofu = Terraform.tofu(Files.createDirectories(dir.resolve(item)));
      tofu.writeConfig(accumulating(url, item));
      tofu.run("init", "-input=false").assertOk();
      runs.add(tofu);
    }
    List<Process> started = new ArrayList<>();
    for (Terraform tofu : runs) {
      started.add(tofu.start("apply", "-auto-approve", "-input=false"));
    }
    // One holds the lock while the other waits in the state's line, as a client of ?wait=.
    await()
        .atMost(Duration.ofSeconds(60))
        .untilAsserted(
            () -> {
              TerraformStateStatus status = harness.status("tofu-race");
              assertThat(status.getHolder()).isNotNull();
              assertThat(status.getQueue())
                  .singleElement()
                  .extracting(QueueEntry::getKind)
                  .isEqualTo("client");
            });
    for (Process p : started) {
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      assertThat(p.waitFor(3, TimeUnit.MINUTES)).isTrue();
      assertThat(p.exitValue()).as(out).isZero();
    }

    JsonNode state = JSON.readTree(backend.get(NAMESPACE + "/tofu-race").body());
    assertThat(items(state)).containsExactlyInAnyOrder("alice", "bob");
    assertThat(state.get("serial").asLong()).isEqualTo(seeded + 2);
    await()
        .atMost(Duration.ofSeconds(10))
        .untilAsserted(
            () ->
                assertThat(harness.events("tofu-race"))
                    .as("the seed's lock and one for each run")
                    .filteredOn(e -> e.startsWith("Normal LockTaken"))
                    .hasSize(3));
    assertThat(harness.events("tofu-race")).noneMatch(e -> e.contains("WriteRefused"));
  }

  @Test
  @DisplayName(
      "tofu's own kubernetes backend (and terraform's) reads the state leasehold wrote: outputs,"
          + " and a plan with no change")
  void kubernetesBackendReadsWhatLeaseholdWrote(@TempDir Path dir) throws Exception {
    String url = createState("tofu-shared", false);
    Terraform writer = Terraform.tofu(Files.createDirectories(dir.resolve("http")));
    writer.writeConfig(Terraform.httpBackend(url, "30s") + SECRET_CONFIG);
    writer.run("init", "-input=false").assertOk();
    writer.run("apply", "-auto-approve", "-input=false").assertOk();

    Terraform reader = Terraform.tofu(Files.createDirectories(dir.resolve("k8s")));
    reader.writeConfig(kubernetesBackend("tofu-shared") + SECRET_CONFIG);
    reader.run("init", "-input=false").assertOk();
    assertThat(reader.run("output", "-raw", "secret").assertOk().output()).isEqualTo(SECRET);
    // -lock=false: tofu's kubernetes backend writes its lock Lease as protobuf, which the
    // embedded API does not read (a real API server does).
    Terraform.Result plan = reader.run("plan", "-detailed-exitcode", "-input=false", "-lock=false");
    assertThat(plan.exitCode()).as(plan.output() + plan.errors()).isZero();
    assertThat(plan.output()).contains("No changes");

    Terraform stock = new Terraform(Files.createDirectories(dir.resolve("terraform")));
    stock.writeConfig(kubernetesBackend("tofu-shared"));
    stock.run("init", "-input=false").assertOk();
    assertThat(stock.run("output", "-raw", "secret").assertOk().output()).isEqualTo(SECRET);
  }

  @Test
  @DisplayName(
      "A state over 1 MiB gzip'd, stored in several Secrets, cannot be read by tofu's kubernetes"
          + " backend (it fails with unexpected EOF): status and a StateChunked Warning say so, and"
          + " tofu reads it through leasehold's HTTP backend")
  void chunkedStateAndTofusKubernetesBackend(@TempDir Path dir) throws Exception {
    String url = createState("tofu-big", false);
    byte[] noise = new byte[900_000];
    new SecureRandom().nextBytes(noise);
    String blob = Base64.getEncoder().encodeToString(noise);
    Path http = Files.createDirectories(dir.resolve("http"));
    Files.writeString(http.resolve("big.auto.tfvars.json"), "{\"blob\":\"" + blob + "\"}");
    String body =
        """
        variable "blob" {}
        resource "terraform_data" "big" {
          input = var.blob
        }
        output "length" {
          value = length(terraform_data.big.output)
        }
        """;
    Terraform writer = Terraform.tofu(http);
    writer.writeConfig(Terraform.httpBackend(url, "30s") + body);
    writer.run("init", "-input=false").assertOk();
    writer.run("apply", "-auto-approve", "-input=false").assertOk();
    assertThat(
            harness
                .client()
                .secrets()
                .inNamespace(NAMESPACE)
                .withName("tfstate-default-tofu-big-part-1")
                .get())
        .as("stored as Terraform 1.10 and later store it: in chunks")
        .isNotNull();

    Terraform reader = Terraform.tofu(Files.createDirectories(dir.resolve("k8s")));
    reader.writeConfig(kubernetesBackend("tofu-big"));
    Terraform.Result init = reader.run("init", "-input=false");
    Terraform.Result output = reader.run("output", "-raw", "length");
    assertThat(output.exitCode()).isNotZero();
    assertThat(init.output() + init.errors() + output.output() + output.errors())
        .contains("unexpected EOF");

    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () -> {
              assertThat(harness.facts("tofu-big").getChunks()).isGreaterThan(1);
              assertThat(harness.facts("tofu-big").getCompatibility())
                  .contains("OpenTofu's kubernetes backend")
                  .contains("leasehold's HTTP backend");
              assertThat(harness.events("tofu-big"))
                  .anyMatch(e -> e.startsWith("Warning StateChunked"));
            });
    assertThat(writer.run("output", "-raw", "length").assertOk().output())
        .isEqualTo(Integer.toString(blob.length()));
  }

  @Test
  @DisplayName(
      "With spec.encryption.required, tofu's encrypted state is stored sealed and shown as"
          + " encrypted, tofu output with the passphrase reads it (HTTP and kubernetes backends),"
          + " and a plaintext tofu apply is refused with 409 and the reason")
  void encryptedStateWhereEncryptionIsRequired(@TempDir Path dir) throws Exception {
    String url = createState("tofu-sealed", true);
    Terraform sealed = Terraform.tofu(Files.createDirectories(dir.resolve("sealed")));
    sealed.writeConfig(Terraform.httpBackend(url, "30s") + ENCRYPTION + SECRET_CONFIG);
    sealed.run("init", "-input=false").assertOk();
    sealed.run("apply", "-auto-approve", "-input=false").assertOk();
    Terraform.Result plan = sealed.run("plan", "-detailed-exitcode", "-input=false");
    assertThat(plan.exitCode()).as("planned on the decrypted state").isZero();
    Files.writeString(
        dir.resolve("sealed/more.tf"), "resource \"terraform_data\" \"more\" {\n  input = 2\n}\n");
    sealed.run("apply", "-auto-approve", "-input=false").assertOk();

    String stored = stored("tofu-sealed");
    JsonNode envelope = JSON.readTree(stored);
    assertThat(keys(envelope))
        .containsExactly("serial", "lineage", "meta", "encrypted_data", "encryption_version");
    assertThat(envelope.get("serial").asLong()).isEqualTo(2);
    assertThat(stored).doesNotContain(SECRET).doesNotContain("terraform_data");
    assertThat(backend.get(NAMESPACE + "/tofu-sealed").body()).isEqualTo(stored);
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () -> {
              StateFacts facts = harness.facts("tofu-sealed");
              assertThat(facts.getSerial()).isEqualTo(2);
              assertThat(facts.encrypted()).isTrue();
              assertThat(facts.getEncryptionVersion()).isEqualTo("v0");
              assertThat(facts.getResources()).as("sealed: not known").isNull();
              assertThat(harness.condition("tofu-sealed", "Ready"))
                  .startsWith("True/StateReadable")
                  .contains("OpenTofu-encrypted");
            });
    assertThat(harness.events("tofu-sealed")).noneMatch(e -> e.contains("StateNotEncrypted"));

    assertThat(sealed.run("output", "-raw", "secret").assertOk().output()).isEqualTo(SECRET);
    Terraform reader = Terraform.tofu(Files.createDirectories(dir.resolve("k8s")));
    reader.writeConfig(kubernetesBackend("tofu-sealed") + ENCRYPTION);
    reader.run("init", "-input=false").assertOk();
    assertThat(reader.run("output", "-raw", "secret").assertOk().output()).isEqualTo(SECRET);

    // A plaintext tofu (no encryption block) on a state that must be encrypted.
    String emptyUrl = createState("tofu-sealed-empty", true);
    Terraform plain = Terraform.tofu(Files.createDirectories(dir.resolve("plain")));
    plain.writeConfig(Terraform.httpBackend(emptyUrl, "30s") + SECRET_CONFIG);
    plain.run("init", "-input=false").assertOk();
    Terraform.Result refused = plain.run("apply", "-auto-approve", "-input=false");
    assertThat(refused.exitCode()).isNotZero();
    assertThat(refused.output() + refused.errors()).contains("HTTP error: 409");
    assertThat(backend.get(NAMESPACE + "/tofu-sealed-empty").status())
        .as("nothing was written")
        .isEqualTo(404);
    await()
        .atMost(Duration.ofSeconds(10))
        .untilAsserted(
            () ->
                assertThat(harness.events("tofu-sealed-empty"))
                    .anyMatch(
                        e ->
                            e.startsWith("Warning WriteRefused")
                                && e.contains("refused (409)")
                                && e.contains("spec.encryption.required")
                                && e.contains("it is plaintext")));
    assertThat(harness.events("tofu-sealed-empty")).noneMatch(e -> e.contains(SECRET));
  }

  @Test
  @DisplayName(
      "A plaintext state with decoy encryption fields beside it is refused (409, naming the"
          + " plaintext fields, never their content) where encryption is required, and shown as"
          + " plaintext, never encrypted, where it is not")
  void decoyEncryptionIsRefused(@TempDir Path dir) throws Exception {
    String url = createState("tofu-decoy", true);
    Terraform sealed = Terraform.tofu(dir);
    sealed.writeConfig(Terraform.httpBackend(url, "30s") + ENCRYPTION + SECRET_CONFIG);
    sealed.run("init", "-input=false").assertOk();
    sealed.run("apply", "-auto-approve", "-input=false").assertOk();
    String before = backend.get(NAMESPACE + "/tofu-decoy").body();
    String lineage = JSON.readTree(before).get("lineage").asText();
    String leaked = "decoy-" + SECRET;

    BackendHttp.Answer refused =
        backend.post(NAMESPACE + "/tofu-decoy", null, OpenTofuStates.decoy(2, lineage, leaked));
    assertThat(refused.status()).isEqualTo(409);
    assertThat(refused.body())
        .contains("requires an encrypted state (spec.encryption.required)")
        .contains("OpenTofu's encryption fields next to plaintext state fields")
        .contains("'outputs'")
        .doesNotContain(leaked);
    assertThat(backend.get(NAMESPACE + "/tofu-decoy").body()).isEqualTo(before);
    assertThat(sealed.run("output", "-raw", "secret").assertOk().output()).isEqualTo(SECRET);
    await()
        .atMost(Duration.ofSeconds(10))
        .untilAsserted(
            () ->
                assertThat(harness.events("tofu-decoy"))
                    .anyMatch(e -> e.startsWith("Warning WriteRefused") && e.contains("(409)")));
    assertThat(harness.events("tofu-decoy")).noneMatch(e -> e.contains(leaked));
    assertThat(harness.facts("tofu-decoy").getSerial()).isEqualTo(1);
    assertThat(harness.facts("tofu-decoy").encrypted()).isTrue();

    // Where encryption is not required the decoy is a plaintext state, and shown as one.
    createState("tofu-decoy-plain", false);
    assertThat(
            backend
                .post(
                    NAMESPACE + "/tofu-decoy-plain",
                    null,
                    OpenTofuStates.decoy(1, "lin-decoy", leaked))
                .status())
        .isEqualTo(200);
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () -> {
              StateFacts facts = harness.facts("tofu-decoy-plain");
              assertThat(facts.getSerial()).isEqualTo(1);
              assertThat(facts.encrypted()).isFalse();
              assertThat(facts.getEncryptionVersion()).isNull();
              assertThat(facts.getResources()).isZero();
            });
  }
}
