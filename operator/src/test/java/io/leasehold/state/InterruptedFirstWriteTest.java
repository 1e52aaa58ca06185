package io.leasehold.state;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.StateFacts;
import io.leasehold.embedded.EmbeddedKubernetes;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * A state's first write stopped at any point before its first state Secret is written leaves no
 * state: it reads as "not stored yet", never as a state deleted by hand, and settling it drops the
 * write, never reports it as stored.
 */
class InterruptedFirstWriteTest {

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
      "A first write stopped after its journal and before any of its copy is dropped when settled,"
          + " not reported as stored")
  void stoppedBeforeItsCopy() throws Exception {
    StateNames names = new StateNames(NS, "no-copy", "default");
    journalLongAbandoned(names, StateHistory.newId(facts(1)));
    assertThat(StateHistory.missingState(client, names)).isEmpty();

    StateWriter.Outcome outcome =
        new StateWriter(client, names).settleAbandoned("test", 10).orElseThrow();

    assertThat(outcome.result()).isEqualTo(StateWriter.Result.NOTHING_WRITTEN);
    assertThat(new WriteJournal(client, names).read()).isEmpty();
    assertThat(new StateHistory(client, names).list()).isEmpty();
  }

  @Test
  @DisplayName(
      "While a first write's journal names a whole copy and no state Secret is written yet, the"
          + " state is not stored yet; once the write is dropped nothing of it is left")
  void copiedButNotWritten() throws Exception {
    StateNames names = new StateNames(NS, "copied", "default");
    StateHistory history = new StateHistory(client, names);
    StateFacts facts = facts(1);
    String id = StateHistory.newId(facts);
    journalLongAbandoned(names, id);
    byte[] json = stateJson(1);
    history.save(id, ChunkedGzip.of(json), facts, "md5", "written");
    assertThat(history.find(id)).get().matches(StateHistory.Version::complete);

    assertThat(StateHistory.missingState(client, names)).isEmpty();

    StateWriter.Outcome outcome =
        new StateWriter(client, names).settleAbandoned("test", 10).orElseThrow();
    assertThat(outcome.result()).isEqualTo(StateWriter.Result.NOTHING_WRITTEN);
    assertThat(history.list()).isEmpty();
    assertThat(StateHistory.missingState(client, names)).isEmpty();
  }

  @Test
  @DisplayName(
      "A copy cut short with no journal (its Secrets left behind) is no version: the state is not"
          + " stored yet, not deleted by hand")
  void aCopyCutShortIsNoVersion() throws Exception {
    StateNames names = new StateNames(NS, "cut-short", "default");
    StateHistory history = new StateHistory(client, names);
    StateFacts facts = facts(1);
    String id = StateHistory.newId(facts);
    List<Chunk> parts = ChunkedGzip.of(stateJson(1));
    history.save(id, parts, facts, "md5", "written");
    StateHistory.Version whole = history.find(id).orElseThrow();
    // Make it a copy of two Secrets of which one is there.
    client
        .secrets()
        .inNamespace(NS)
        .withName(whole.chunks().get(0).getMetadata().getName())
        .edit(
            s -> {
              s.getMetadata().getAnnotations().put(StateHistory.CHUNK_ANNOTATION, "0/2");
              return s;
            });

    assertThat(history.find(id)).get().matches(v -> !v.complete());
    assertThat(StateHistory.missingState(client, names)).isEmpty();
  }

  private static void journalLongAbandoned(StateNames names, String to) {
    new WriteJournal(client, names)
        .begin(
            null,
            to,
            "1",
            "a writer that stopped",
            Instant.now().minus(WriteJournal.GRACE).minusSeconds(60));
  }

  private static StateFacts facts(long serial) throws StateUnreadableException {
    return StoredState.facts(stateJson(serial), "test state", "test");
  }

  private static byte[] stateJson(long serial) {
    return ("{\"version\":4,\"terraform_version\":\"1.11.4\",\"serial\":"
            + serial
            + ",\"lineage\":\"lin-first\",\"outputs\":{},\"resources\":[]}")
        .getBytes(StandardCharsets.UTF_8);
  }
}
