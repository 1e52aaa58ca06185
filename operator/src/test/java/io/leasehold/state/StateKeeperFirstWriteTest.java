package io.leasehold.state;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.StateFacts;
import io.leasehold.api.TerraformState;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.support.TerraformStates;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/** How the operator tells a state it sees for the first time. */
class StateKeeperFirstWriteTest {

  private static final String NS = "default";
  private static EmbeddedKubernetes api;
  private static KubernetesClient client;

  @BeforeAll
  static void start() {
    api = EmbeddedKubernetes.start(0);
    client = api.newClient();
  }

  @AfterAll
  static void stop() {
    client.close();
    api.close();
  }

  @Test
  @DisplayName(
      "leasehold's own first write, seen while its journal is still open (its state Secret just"
          + " stored), is told as StateCreated, not as a state found")
  void firstWriteSeenBeforeItsJournalCloses() throws Exception {
    StateNames names = new StateNames(NS, "seen-mid-write", "default");
    String json = TerraformStates.stateJson(1, "lin-mid", 1);
    byte[] bytes = json.getBytes(StandardCharsets.UTF_8);
    StateFacts facts = StoredState.facts(bytes, "test state", "test");
    String id = StateHistory.newId(facts);
    // The write's order: journal, history copy, state Secrets; the journal is still open.
    new WriteJournal(client, names)
        .begin(null, id, "1", "a writer at work", Instant.now().plusSeconds(30));
    new StateHistory(client, names)
        .save(
            id,
            ChunkedGzip.of(bytes),
            facts,
            md5(bytes),
            "written through the HTTP backend by alice");
    List<Secret> stored = new ArrayList<>();
    for (Secret s : TerraformStates.secrets(names, json)) {
      stored.add(client.resource(s).create());
    }

    List<String> told = new ArrayList<>();
    try (StateKeeper keeper = new StateKeeper(client)) {
      keeper.observe(resource(names), names, stored, null, notices(told));
    }

    assertThat(told)
        .anyMatch(
            e ->
                e.startsWith("Normal StateCreated: first state stored in")
                    && e.contains("written through the HTTP backend by alice"))
        .noneMatch(e -> e.contains("StateAdopted"));
  }

  @Test
  @DisplayName("A state written outside leasehold, seen for the first time, is told as found")
  void stockStateIsFound() throws Exception {
    StateNames names = new StateNames(NS, "stock-first", "default");
    List<Secret> stored = new ArrayList<>();
    for (Secret s : TerraformStates.secrets(names, TerraformStates.stateJson(3, "lin-s", 1))) {
      stored.add(client.resource(s).create());
    }

    List<String> told = new ArrayList<>();
    try (StateKeeper keeper = new StateKeeper(client)) {
      keeper.observe(resource(names), names, stored, null, notices(told));
    }

    assertThat(told).anyMatch(e -> e.startsWith("Normal StateAdopted: found state in"));
    assertThat(new StateHistory(client, names).list())
        .singleElement()
        .matches(v -> StateKeeper.WRITTEN_OUTSIDE.equals(v.reason()));
  }

  private static TerraformState resource(StateNames names) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(names.name());
    s.getMetadata().setNamespace(names.namespace());
    return s;
  }

  private static StateKeeper.Notices notices(List<String> told) {
    return new StateKeeper.Notices() {
      @Override
      public void normal(String reason, String message) {
        told.add("Normal " + reason + ": " + message);
      }

      @Override
      public void warning(String reason, String message) {
        told.add("Warning " + reason + ": " + message);
      }
    };
  }

  private static String md5(byte[] json) throws Exception {
    return Base64.getEncoder().encodeToString(MessageDigest.getInstance("MD5").digest(json));
  }
}
