package io.leasehold.state;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.leasehold.support.OpenTofuStates;
import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.stream.Stream;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * What counts as OpenTofu-encrypted: exactly the document OpenTofu writes. The envelopes are the
 * real {@code tofu}'s (test resources {@code io/leasehold/state/opentofu/}), the rest are them
 * changed by one field.
 */
class OpenTofuEnvelopeTest {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static final String SECRET = "s3cr3t-in-clear";

  private static String real(String name) {
    return OpenTofuStates.real(name);
  }

  private static StateJson.Document read(String json) throws Exception {
    return StateJson.read(
        new ByteArrayInputStream(json.getBytes(StandardCharsets.UTF_8)), "request body", "body");
  }

  /** The real envelope with {@code field} set to {@code value} (raw JSON), other bytes kept. */
  private static String with(String field, String value) throws Exception {
    ObjectNode node = (ObjectNode) JSON.readTree(real("pbkdf2-aes-gcm"));
    node.set(field, JSON.readTree(value));
    return JSON.writeValueAsString(node);
  }

  private static String without(String field) throws Exception {
    ObjectNode node = (ObjectNode) JSON.readTree(real("pbkdf2-aes-gcm"));
    node.remove(field);
    return JSON.writeValueAsString(node);
  }

  private static String base64(int bytes) {
    return Base64.getEncoder().encodeToString(new byte[bytes]);
  }

  @ParameterizedTest(name = "{0}")
  @ValueSource(
      strings = {
        "pbkdf2-aes-gcm",
        "pbkdf2-metadata-alias",
        "pbkdf2-local-file",
        "external-key-provider"
      })
  @DisplayName(
      "A state OpenTofu encrypted (pbkdf2 with or without a metadata alias, an external key"
          + " provider, sent or written to a file) is encrypted, with its clear serial and lineage")
  void realEnvelopesAreEncrypted(String name) throws Exception {
    String json = real(name);
    StateJson.Document document = read(json);
    assertThat(document.notEncrypted()).isNull();
    assertThat(document.facts().encrypted()).isTrue();
    assertThat(document.facts().getEncryptionVersion()).isEqualTo("v0");
    assertThat(document.facts().getSerial()).isEqualTo(JSON.readTree(json).get("serial").asLong());
    assertThat(document.facts().getLineage())
        .isEqualTo(JSON.readTree(json).get("lineage").asText());
    assertThat(document.facts().getResources()).as("sealed: not known").isNull();
  }

  @Test
  @DisplayName(
      "A plaintext state carrying decoy encryption fields (meta {}, encrypted_data \"AAAA\","
          + " encryption_version v0) is plaintext, and why names its plaintext fields, never"
          + " their content")
  void decoyBesidePlaintextIsPlaintext() throws Exception {
    StateJson.Document document = read(OpenTofuStates.decoy(2, "lin-decoy", SECRET));
    assertThat(document.facts().encrypted()).isFalse();
    assertThat(document.facts().getEncryptionVersion()).isNull();
    assertThat(document.facts().getResources()).isZero();
    assertThat(document.notEncrypted())
        .contains("OpenTofu's encryption fields next to plaintext state fields")
        .contains("'check_results', 'outputs', 'resources', 'terraform_version', 'version'")
        .doesNotContain(SECRET);
  }

  @Test
  @DisplayName(
      "A real envelope with a plaintext field added (outputs in clear) is not encrypted, and is"
          + " refused as not a state, naming the field but not its content")
  void envelopeWithPlaintextBeside() {
    assertThatThrownBy(
            () ->
                read(
                    with(
                        "outputs",
                        "{\"secret\":{\"value\":\"" + SECRET + "\",\"type\":\"string\"}}")))
        .isInstanceOf(NotEncryptedException.class)
        .hasMessageContaining("plaintext state fields ('outputs')")
        .hasMessageNotContaining(SECRET);
  }

  @Test
  @DisplayName(
      "A real envelope with a key OpenTofu does not write is not encrypted; the key's name is"
          + " not repeated back")
  void envelopeWithOtherKey() {
    assertThatThrownBy(() -> read(with("x-" + SECRET, "\"hidden\"")))
        .isInstanceOf(NotEncryptedException.class)
        .hasMessageContaining("plaintext state fields (other keys)")
        .hasMessageNotContaining(SECRET)
        .hasMessageNotContaining("hidden");
  }

  static Stream<Arguments> notOpenTofus() throws Exception {
    return Stream.of(
        Arguments.of("no meta", without("meta"), "needs 'meta'"),
        Arguments.of("meta null", with("meta", "null"), "'meta' must be an object"),
        Arguments.of(
            "meta value not base64",
            with("meta", "{\"key_provider.pbkdf2.p\":\"not base64!\"}"),
            "'meta' must be standard base64"),
        Arguments.of(
            "meta value base64 of no JSON object",
            with(
                "meta",
                "{\"key_provider.pbkdf2.p\":\""
                    + Base64.getEncoder().encodeToString("[1,2]".getBytes(StandardCharsets.UTF_8))
                    + "\"}"),
            "must be base64 of the JSON object a key provider wrote"),
        Arguments.of(
            "meta value a number", with("meta", "{\"k\":1}"), "must be base64 of the JSON object"),
        Arguments.of("no encrypted_data", without("encrypted_data"), "needs 'encrypted_data'"),
        Arguments.of("encrypted_data AAAA", with("encrypted_data", "\"AAAA\""), "holds 3 bytes"),
        Arguments.of(
            "encrypted_data one byte short of nonce and tag",
            with("encrypted_data", "\"" + base64(27) + "\""),
            "fewer than the 28 of AES-GCM's nonce and tag"),
        Arguments.of(
            "encrypted_data empty", with("encrypted_data", "\"\""), "holds 0 bytes, fewer than"),
        Arguments.of(
            "encrypted_data without padding",
            with("encrypted_data", "\"" + base64(40).replace("=", "") + "\""),
            "'encrypted_data' must be standard base64"),
        Arguments.of(
            "encrypted_data URL-safe alphabet",
            with("encrypted_data", "\"" + "-_-_".repeat(12) + "\""),
            "'encrypted_data' must be standard base64"),
        Arguments.of(
            "encrypted_data with spaces",
            with("encrypted_data", "\"" + base64(30) + " " + base64(30) + "\""),
            "'encrypted_data' must be standard base64"),
        Arguments.of(
            "encrypted_data with an escaped character",
            with("encrypted_data", "\"" + base64(45) + "\"").replace("\"AAAA", "\"\\u0041AAA"),
            "'encrypted_data' must be standard base64"),
        Arguments.of(
            "encrypted_data not a string",
            with("encrypted_data", "[1,2,3]"),
            "'encrypted_data' must be a string"),
        Arguments.of("no encryption_version", without("encryption_version"), "without"),
        Arguments.of(
            "encryption_version v1",
            with("encryption_version", "\"v1\""),
            "'encryption_version' must be \"v0\""),
        Arguments.of("no serial", without("serial"), "needs its 'serial' and 'lineage' in clear"),
        Arguments.of(
            "no lineage", without("lineage"), "needs its 'serial' and 'lineage' in clear"));
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("notOpenTofus")
  @DisplayName(
      "A real envelope changed in one field to something OpenTofu never writes is not"
          + " encrypted, and the reason names the field")
  void notWhatOpenTofuWrites(String name, String json, String reason) {
    assertThatThrownBy(() -> read(json))
        .isInstanceOf(NotEncryptedException.class)
        .hasMessageStartingWith("request body: ")
        .hasMessageContaining(reason);
  }

  @Test
  @DisplayName(
      "An envelope with no key-provider metadata (meta {}) and a sealed state of exactly"
          + " nonce and tag is the least OpenTofu writes, and is encrypted")
  void leastOpenTofuWrites() throws Exception {
    ObjectNode node = (ObjectNode) JSON.readTree(with("meta", "{}"));
    node.put("encrypted_data", base64(28));
    assertThat(read(JSON.writeValueAsString(node)).facts().encrypted()).isTrue();
  }

  @Test
  @DisplayName(
      "A key of the envelope in other letters (Encrypted_Data) is refused, as Go would read it"
          + " as encrypted_data")
  void caseVariantKey() {
    String json = real("pbkdf2-aes-gcm").replace("\"encrypted_data\"", "\"Encrypted_Data\"");
    assertThatThrownBy(() -> read(json))
        .isInstanceOf(StateUnreadableException.class)
        .hasMessageContaining("'encrypted_data' in letters of different case");
  }

  @Test
  @DisplayName(
      "A plaintext state is plaintext; one with only a meta object beside it stays a plaintext"
          + " state Terraform reads")
  void plaintextStates() throws Exception {
    StateJson.Document plain = read(plain(3));
    assertThat(plain.facts().encrypted()).isFalse();
    assertThat(plain.notEncrypted()).isEqualTo("it is plaintext");
    StateJson.Document withMeta =
        read(plain(3).replace("{\"version\"", "{\"meta\":{},\"version\""));
    assertThat(withMeta.facts().encrypted()).isFalse();
    assertThat(withMeta.facts().getSerial()).isEqualTo(3);
  }

  @Test
  @DisplayName(
      "A large sealed state is checked as it streams by: its base64 is counted, not held, and"
          + " one bad character at its end is found")
  void largeSealedState() throws Exception {
    String sealed = base64(12_000_000);
    ObjectNode node = (ObjectNode) JSON.readTree(real("pbkdf2-aes-gcm"));
    node.put("encrypted_data", sealed);
    assertThat(read(JSON.writeValueAsString(node)).facts().encrypted()).isTrue();
    node.put("encrypted_data", sealed.substring(0, sealed.length() - 4) + "AA*A");
    assertThatThrownBy(() -> read(JSON.writeValueAsString(node)))
        .isInstanceOf(NotEncryptedException.class)
        .hasMessageContaining("'encrypted_data' must be standard base64");
  }

  /** A plaintext state as Terraform writes it. */
  private static String plain(long serial) {
    return "{\"version\":4,\"terraform_version\":\"1.11.4\",\"serial\":"
        + serial
        + ",\"lineage\":\"lin-plain\",\"outputs\":{},\"resources\":[]}";
  }
}
