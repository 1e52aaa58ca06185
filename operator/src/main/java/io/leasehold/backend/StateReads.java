package io.leasehold.backend;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.StateFacts;
import io.leasehold.state.StateHistory;
import io.leasehold.state.StateStore;
import io.leasehold.state.StateUnreadableException;
import io.leasehold.state.StoredState;
import java.io.IOException;
import java.io.InputStream;
import java.util.Map;
import java.util.Optional;

/** GET of a state: its JSON, streamed from the stored gzip data as it is sent. */
final class StateReads {

  private final KubernetesClient client;

  StateReads(KubernetesClient client) {
    this.client = client;
  }

  /** The state JSON with its Content-MD5, 404 when none is stored yet, 500 when it is missing. */
  Reply get(StateBackend.Target target) {
    Optional<StateStore.Current> current = read(client, target, "read");
    if (current.isEmpty()) {
      Optional<String> missing = StateHistory.missingState(client, target.names());
      if (missing.isPresent()) {
        return Reply.text(500, missing.get());
      }
      return Reply.text(404, "no state stored yet for " + StateTargets.describe(target));
    }
    return stateReply(current.get().compressed(), current.get().facts(), current.get().md5());
  }

  /** A 200 reply that streams the JSON of {@code compressed} when it is sent. */
  static Reply stateReply(StoredState.Compressed compressed, StateFacts facts, String md5) {
    long length = facts.getRawBytes();
    return Reply.streamed(
        200,
        "application/json",
        new Reply.Streamed() {
          @Override
          public long length() {
            return length;
          }

          @Override
          public InputStream open() throws IOException {
            return StoredState.open(compressed);
          }
        },
        Map.of("Content-MD5", md5));
  }

  /**
   * The stored state; only a read keeps the gzip data (a write or delete fetches it again if it
   * needs it).
   *
   * @throws ReplyException 500 when the stored state cannot be read
   */
  static Optional<StateStore.Current> read(
      KubernetesClient client, StateBackend.Target target, String what) {
    try {
      return new StateStore(client, target.names()).read(what.equals("read"));
    } catch (StateUnreadableException e) {
      throw ReplyException.text(
          500,
          "the stored state cannot be read, so nothing can be "
              + (what.equals("read") ? "returned" : "written")
              + " until it is repaired or restored from history: "
              + e.getMessage());
    }
  }
}
