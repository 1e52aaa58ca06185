package io.leasehold.backend;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.leasehold.api.StateFacts;
import io.leasehold.api.TerraformState;
import io.leasehold.state.StateNames;
import io.leasehold.support.OpenTofuStates;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.TerraformStates;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.Base64;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/** OpenTofu's client-side encrypted state, and what OpenTofu's own kubernetes backend can read. */
class OpenTofuStateTest {

  private static OperatorHarness harness;
  private static BackendClient backend;

  @BeforeAll
  static void start() {
    harness = OperatorHarness.start();
    backend = new BackendClient(harness.startBackend(64L * 1024 * 1024));
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  /** An encrypted state as OpenTofu 1.7+ writes it (from one the real tofu wrote). */
  static String encrypted(long serial, String lineage, String variant) {
    return OpenTofuStates.encrypted(serial, lineage, variant);
  }

  private static StateNames create(String name, boolean required) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    s.getSpec().getEncryption().setRequired(required);
    harness.client().resource(s).create();
    return new StateNames(NAMESPACE, name, "default");
  }

  /** The state's facts as status shows them; empty until status shows any. */
  private static StateFacts facts(String name) {
    return harness.facts(name);
  }

  /** The Ready condition as "status/reason: message"; empty until status has one. */
  private static String ready(String name) {
    return harness.condition(name, "Ready");
  }

  @Test
  @DisplayName(
      "An OpenTofu-encrypted state is stored byte for byte, guarded by its clear serial and"
          + " lineage, and status says it is encrypted")
  void encryptedStateThroughTheBackend() throws Exception {
    create("tofu-http", true);
    String state = NAMESPACE + "/tofu-http";
    String v1 = encrypted(1, "lin-tofu", "sealed state one");
    String v2 = encrypted(2, "lin-tofu", "sealed state two, longer");
    assertThat(backend.post(state, null, v1).status()).isEqualTo(200);
    BackendClient.Response second = backend.post(state, null, v2);
    assertThat(second.status()).as(second.body()).isEqualTo(200);

    BackendClient.Response read = backend.get(state);
    assertThat(read.body()).isEqualTo(v2);
    assertThat(read.header("Content-MD5")).isEqualTo(md5(v2));
    assertThat(backend.post(state, null, v1).status()).isEqualTo(409);
    assertThat(backend.post(state, null, encrypted(3, "lin-other", "x")).status()).isEqualTo(409);

    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () -> {
              StateFacts f = facts("tofu-http");
              assertThat(f.getSerial()).isEqualTo(2);
              assertThat(f.encrypted()).isTrue();
              assertThat(f.getEncryptionVersion()).isEqualTo("v0");
              assertThat(f.getResources()).as("not known for an encrypted state").isNull();
            });
    assertThat(ready("tofu-http")).startsWith("True/StateReadable").contains("OpenTofu-encrypted");
    assertThat(harness.events("tofu-http")).noneMatch(e -> e.contains("StateNotEncrypted"));
  }

  @Test
  @DisplayName(
      "The encrypted state OpenTofu's kubernetes backend writes (one Secret) is read, not"
          + " Degraded, and the backend serves it unchanged")
  void encryptedStateFromTheKubernetesBackend() throws Exception {
    StateNames names = create("tofu-k8s", false);
    String json = encrypted(5, "lin-k8s", "sealed by tofu");
    EveryVersionKeptTest.stockWrite(harness.client(), names, json);
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () -> {
              assertThat(ready("tofu-k8s")).startsWith("True/StateReadable");
              assertThat(facts("tofu-k8s").encrypted()).isTrue();
            });
    assertThat(backend.get(NAMESPACE + "/tofu-k8s").body()).isEqualTo(json);
  }

  @Test
  @DisplayName(
      "Where encryption is required, a plaintext state found in the Secrets raises a"
          + " StateNotEncrypted Warning (and plaintext writes are refused)")
  void plaintextWhereEncryptionIsRequired() throws Exception {
    StateNames names = create("tofu-required", true);
    EveryVersionKeptTest.stockWrite(
        harness.client(), names, TerraformStates.stateJson(3, "lin-plain", 1));
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () ->
                assertThat(harness.events("tofu-required"))
                    .anyMatch(
                        e ->
                            e.startsWith("Warning StateNotEncrypted")
                                && e.contains("serial 3")
                                && e.contains("spec.encryption.required")));
    BackendClient.Response refused =
        backend.post(
            NAMESPACE + "/tofu-required", null, TerraformStates.stateJson(4, "lin-plain", 1));
    assertThat(refused.status()).isEqualTo(409);
    assertThat(refused.body()).contains("it is plaintext");
    BackendClient.Response encryptedWrite =
        backend.post(NAMESPACE + "/tofu-required", null, encrypted(4, "lin-plain", "now sealed"));
    assertThat(encryptedWrite.status()).as(encryptedWrite.body()).isEqualTo(200);
  }

  @Test
  @DisplayName(
      "A state that grows past one Secret says in status which clients cannot read it, with a"
          + " StateChunked Warning")
  void chunkedStateWarns() throws Exception {
    create("tofu-big", false);
    String state = NAMESPACE + "/tofu-big";
    assertThat(backend.post(state, null, TerraformStates.stateJson(1, "lin-big", 1)).status())
        .isEqualTo(200);
    await().atMost(Duration.ofSeconds(20)).until(() -> facts("tofu-big").getSerial() != null);
    assertThat(facts("tofu-big").getCompatibility()).isNull();
    assertThat(
            backend
                .post(state, null, TerraformStates.randomState(2, "lin-big", 2_000_000, 7))
                .status())
        .isEqualTo(200);
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () -> {
              assertThat(facts("tofu-big").getChunks()).isGreaterThan(1);
              assertThat(facts("tofu-big").getCompatibility())
                  .contains("OpenTofu's kubernetes backend")
                  .contains("before 1.10");
            });
    await()
        .atMost(Duration.ofSeconds(10))
        .until(
            () ->
                harness.events("tofu-big").stream()
                    .anyMatch(e -> e.startsWith("Warning StateChunked") && e.contains("serial 2")));
  }

  private static String md5(String body) throws Exception {
    return Base64.getEncoder()
        .encodeToString(
            MessageDigest.getInstance("MD5").digest(body.getBytes(StandardCharsets.UTF_8)));
  }
}
