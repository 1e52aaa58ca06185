package io.leasehold.state;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.leasehold.api.StateFacts;
import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class StateJsonTest {

  private static StateFacts parse(String json) throws Exception {
    return StateJson.parse(
        new ByteArrayInputStream(json.getBytes(StandardCharsets.UTF_8)), "test", "test");
  }

  @Test
  @DisplayName(
      "Keys Go's decoder takes for a state key (Unicode case folding: long s, Kelvin sign) are"
          + " refused, as Terraform would read them as that key")
  void goCaseFolding() {
    assertThat(StateJson.fold("\u017ferial")).isEqualTo(StateJson.fold("serial"));
    assertThat(StateJson.fold("chec\u212a_results")).isEqualTo(StateJson.fold("check_results"));
    assertThatThrownBy(
            () -> parse("{\"version\":4,\"serial\":1,\"lineage\":\"l\",\"chec\u212a_results\":[]}"))
        .isInstanceOf(StateUnreadableException.class)
        .hasMessageContaining("'check_results' in letters of different case");
  }

  @Test
  @DisplayName("A serial past 2^63-1 is kept as its unsigned bits and shown as Terraform writes it")
  void unsignedSerial() throws Exception {
    StateFacts facts = parse("{\"version\":4,\"serial\":18446744073709551615,\"lineage\":\"l\"}");
    assertThat(facts.getSerial()).isEqualTo(-1L);
    assertThat(facts.serialText()).isEqualTo("18446744073709551615");
    assertThat(StateFacts.compareSerials(facts.getSerial(), Long.MAX_VALUE)).isPositive();
  }

  @Test
  @DisplayName("A new serial is set in place: every other byte of the document stays as it was")
  void withSerialKeepsTheRest() throws Exception {
    String json =
        "{\n  \"version\": 4,\n  \"x\": {\"serial\": 1},\n  \"serial\":   7 ,\"lineage\":\"l\"}";
    String changed =
        new String(
            StateJson.withSerial(
                json.getBytes(StandardCharsets.UTF_8),
                Long.parseUnsignedLong("18446744073709551615")),
            StandardCharsets.UTF_8);
    assertThat(changed)
        .isEqualTo(
            "{\n  \"version\": 4,\n  \"x\": {\"serial\": 1},\n  \"serial\":   18446744073709551615 ,\"lineage\":\"l\"}");
    assertThat(parse(changed).serialText()).isEqualTo("18446744073709551615");
  }

  @Test
  @DisplayName(
      "OpenTofu's encrypted state gives its clear serial and lineage, and no resource count")
  void encryptedState() throws Exception {
    StateFacts facts =
        parse(
            "{\"serial\":3,\"lineage\":\"l\",\"meta\":{},\"encrypted_data\":\""
                + java.util.Base64.getEncoder().encodeToString(new byte[64])
                + "\",\"encryption_version\":\"v0\"}");
    assertThat(facts.encrypted()).isTrue();
    assertThat(facts.serialText()).isEqualTo("3");
    assertThat(facts.getResources()).isNull();
  }
}
