package io.leasehold.state;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.fabric8.kubernetes.api.model.Secret;
import io.leasehold.api.StateFacts;
import io.leasehold.support.TerraformStates;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class StoredStateTest {

  private static final StateNames NAMES = new StateNames("ns", "app", "default");

  private static List<Secret> secrets(String json) {
    return TerraformStates.secrets(NAMES, json);
  }

  @Test
  @DisplayName("No state Secret means no state yet")
  void noSecretIsNoState() throws Exception {
    assertThat(StoredState.read(NAMES, List.of())).isEmpty();
  }

  @Test
  @DisplayName("A state Secret without the tfstate key is no state yet, as Terraform reads it")
  void secretWithoutKeyIsNoState() throws Exception {
    Secret empty = TerraformStates.secret(NAMES, NAMES.secretName(), new byte[0]);
    empty.setData(Map.of());
    assertThat(StoredState.read(NAMES, List.of(empty))).isEmpty();
  }

  @Test
  @DisplayName("Facts come from the state JSON: serial, lineage, version, instances, sizes")
  void readsFacts() throws Exception {
    String json = TerraformStates.stateJson(42, "abc-lineage", 5);
    StateFacts facts = StoredState.read(NAMES, secrets(json)).orElseThrow();
    assertThat(facts.getSerial()).isEqualTo(42);
    assertThat(facts.getLineage()).isEqualTo("abc-lineage");
    assertThat(facts.getTerraformVersion()).isEqualTo("1.11.4");
    assertThat(facts.getResources()).isEqualTo(5);
    assertThat(facts.getRawBytes()).isEqualTo(json.getBytes(StandardCharsets.UTF_8).length);
    assertThat(facts.getCompressedBytes())
        .isEqualTo(TerraformStates.gzip(json.getBytes(StandardCharsets.UTF_8)).length);
    assertThat(facts.getChunks()).isEqualTo(1);
    assertThat(facts.getSecretName()).isEqualTo("tfstate-default-app");
  }

  @Test
  @DisplayName("Chunks are joined in numeric order, whatever order the Secrets come in")
  void joinsChunksInNumericOrder() throws Exception {
    byte[] noise = new byte[12 * 1024 * 1024];
    new Random(1).nextBytes(noise);
    String padding = java.util.Base64.getEncoder().encodeToString(noise);
    String json = TerraformStates.stateJson(3, "big", 1, padding);
    List<Secret> chunks = new ArrayList<>(secrets(json));
    assertThat(chunks).hasSizeGreaterThan(10); // part-10 sorts before part-2 as text
    java.util.Collections.reverse(chunks);

    StateFacts facts = StoredState.read(NAMES, chunks).orElseThrow();

    assertThat(facts.getChunks()).isEqualTo(chunks.size());
    assertThat(facts.getSerial()).isEqualTo(3);
    assertThat(facts.getRawBytes()).isEqualTo(json.length());
  }

  @Test
  @DisplayName("Secrets of other states and workspaces are ignored")
  void ignoresOtherStates() throws Exception {
    List<Secret> all = new ArrayList<>(secrets(TerraformStates.stateJson(1, "mine", 1)));
    all.addAll(
        TerraformStates.secrets(
            new StateNames("ns", "app", "staging"), TerraformStates.stateJson(9, "theirs", 1)));
    all.addAll(
        TerraformStates.secrets(
            new StateNames("ns", "app-x", "default"), TerraformStates.stateJson(8, "other", 1)));
    assertThat(StoredState.read(NAMES, all).orElseThrow().getLineage()).isEqualTo("mine");
  }

  @Test
  @DisplayName("Data that is not gzip is refused, naming the Secret")
  void refusesNonGzip() {
    Secret bad =
        TerraformStates.secret(NAMES, NAMES.secretName(), "{}".getBytes(StandardCharsets.UTF_8));
    assertThatThrownBy(() -> StoredState.read(NAMES, List.of(bad)))
        .isInstanceOf(StateUnreadableException.class)
        .hasMessageContaining("tfstate-default-app")
        .hasMessageContaining("not gzip");
  }

  @Test
  @DisplayName("Truncated gzip (a lost last chunk) is refused")
  void refusesTruncatedGzip() {
    byte[] gz =
        TerraformStates.gzip(
            TerraformStates.stateJson(1, "l", 50).getBytes(StandardCharsets.UTF_8));
    Secret cut =
        TerraformStates.secret(NAMES, NAMES.secretName(), Arrays.copyOf(gz, gz.length / 2));
    assertThatThrownBy(() -> StoredState.read(NAMES, List.of(cut)))
        .isInstanceOf(StateUnreadableException.class)
        .hasMessageContaining("corrupt or truncated");
  }

  @Test
  @DisplayName("Gzip'd text that is not JSON is refused")
  void refusesNonJson() {
    Secret bad =
        TerraformStates.secret(
            NAMES,
            NAMES.secretName(),
            TerraformStates.gzip("not json".getBytes(StandardCharsets.UTF_8)));
    assertThatThrownBy(() -> StoredState.read(NAMES, List.of(bad)))
        .isInstanceOf(StateUnreadableException.class)
        .hasMessageContaining("not JSON at character 3")
        .hasMessageNotContaining("json");
  }

  @Test
  @DisplayName("JSON that is not a Terraform state is refused")
  void refusesJsonThatIsNotState() {
    Secret bad =
        TerraformStates.secret(
            NAMES,
            NAMES.secretName(),
            TerraformStates.gzip("{\"hello\":\"world\"}".getBytes(StandardCharsets.UTF_8)));
    assertThatThrownBy(() -> StoredState.read(NAMES, List.of(bad)))
        .isInstanceOf(StateUnreadableException.class)
        .hasMessageContaining("not a Terraform state");
  }

  @Test
  @DisplayName("A missing middle chunk is refused, naming it")
  void refusesGap() {
    byte[] noise = new byte[2_500_000];
    new Random(2).nextBytes(noise);
    List<Secret> chunks = TerraformStates.secretsOfGzip(NAMES, noise);
    assertThatThrownBy(() -> StoredState.read(NAMES, List.of(chunks.get(0), chunks.get(2))))
        .isInstanceOf(StateUnreadableException.class)
        .hasMessageContaining("chunk tfstate-default-app-part-1 is missing");
  }

  @Test
  @DisplayName("A chunk without its main Secret is refused")
  void refusesOrphanChunk() {
    Secret orphan = TerraformStates.secret(NAMES, NAMES.chunkSecretName(1), new byte[] {1, 2, 3});
    assertThatThrownBy(() -> StoredState.read(NAMES, List.of(orphan)))
        .isInstanceOf(StateUnreadableException.class)
        .hasMessageContaining("tfstate-default-app is missing but its chunk");
  }
}
