package io.leasehold.backend;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.leasehold.lock.LockInfo;
import io.leasehold.operator.EventRecorder;
import io.leasehold.state.StateHistory;
import io.leasehold.state.StateStore;
import io.leasehold.state.StateUnreadableException;
import io.leasehold.state.StoredState;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.List;
import java.util.Optional;
import java.util.UUID;

/** The kept versions of a state: listed, read, and restored as a new version under the lock. */
final class HistoryService {

  private static final ObjectMapper MAPPER = new ObjectMapper();

  private final KubernetesClient client;
  private final EventRecorder events;
  private final WriteLock lock;
  private final GuardedWrites writes;

  HistoryService(
      KubernetesClient client, EventRecorder events, WriteLock lock, GuardedWrites writes) {
    this.client = client;
    this.events = events;
    this.lock = lock;
    this.writes = writes;
  }

  /** GET history: the kept versions, newest first, as JSON. */
  Reply list(StateBackend.Target target) {
    StringBuilder json = new StringBuilder("{\"versions\":[");
    boolean first = true;
    for (StateHistory.Version v : new StateHistory(client, target.names()).list()) {
      if (!first) {
        json.append(',');
      }
      first = false;
      json.append(
          MAPPER
              .createObjectNode()
              .put("id", v.id())
              .put("serial", v.serial())
              .put("lineage", v.lineage())
              .put("savedAt", v.savedAt())
              .put("reason", v.reason())
              .put("chunks", v.chunks().size())
              .toString());
    }
    return Reply.json(200, json.append("]}").toString());
  }

  /** GET one kept version's state JSON. */
  Reply version(StateBackend.Target target, String versionId) {
    StateHistory.Version version = find(target, versionId);
    try {
      StoredState.Compressed compressed =
          new StateHistory(client, target.names()).compressed(version);
      StoredState.Inspection inspection = StoredState.inspect(target.names(), compressed);
      return StateReads.stateReply(compressed, inspection.facts(), inspection.md5());
    } catch (StateUnreadableException e) {
      throw ReplyException.text(
          500, "history version " + versionId + " cannot be read: " + e.getMessage());
    }
  }

  /**
   * Restores a kept version as a new version: its content with the next serial, written under the
   * lock (taken for the restore and released after), the replaced state kept in history.
   */
  Reply restore(StateBackend.Target target, String versionId, Requester who) {
    StateHistory history = new StateHistory(client, target.names());
    StateHistory.Version version = find(target, versionId);
    byte[] old;
    try {
      old = history.load(version);
    } catch (StateUnreadableException e) {
      throw ReplyException.text(
          500, "history version " + versionId + " cannot be read: " + e.getMessage());
    }
    LockInfo info =
        new LockInfo(
            "leasehold-restore-" + UUID.randomUUID(),
            "restore",
            "restoring history version " + versionId,
            who.toString(),
            "leasehold",
            Instant.now().toString(),
            target.names().secretName());
    StateBackend.LockAttempt attempt = lock.tryLock(target, info, who);
    if (!attempt.acquired()) {
      return Reply.text(
          423, "the state is locked, and a restore needs the lock: " + attempt.reply().bodyText());
    }
    try {
      return writes.exclusively(target, () -> restoreLocked(target, version, old, who));
    } finally {
      lock.unlock(target, info.toJson().getBytes(StandardCharsets.UTF_8), who);
    }
  }

  private Reply restoreLocked(
      StateBackend.Target target, StateHistory.Version version, byte[] old, Requester who) {
    String versionId = version.id();
    StateHistory history = new StateHistory(client, target.names());
    StateStore store = new StateStore(client, target.names());
    Optional<StateStore.Current> current;
    try {
      current = store.read();
    } catch (StateUnreadableException unreadable) {
      // The documented way out of a corrupt state: keep the corrupt Secrets in history as
      // they are, then write the chosen version over them.
      List<Secret> corrupt = store.secrets();
      String kept =
          history.saveUnreadable(corrupt, "unreadable, replaced by restore of " + versionId);
      store.writeOver(old, corrupt);
      events.warning(
          target.state(),
          "StateRestored",
          "the unreadable state (kept in history as "
              + kept
              + ") was replaced by history version "
              + versionId
              + " (serial "
              + version.serial()
              + ") by "
              + who);
      return Reply.text(
          200,
          "history version "
              + versionId
              + " (serial "
              + version.serial()
              + ") restored over the unreadable state, which is kept in history as "
              + kept);
    }
    long serial = current.map(c -> c.facts().getSerial() + 1).orElse(version.serial());
    if (current.isPresent() && !current.get().facts().getLineage().equals(version.lineage())) {
      return Reply.text(
          409,
          "history version "
              + versionId
              + " has lineage "
              + version.lineage()
              + " but the stored state has lineage "
              + current.get().facts().getLineage()
              + ": delete the state first to restore another lineage. Nothing was written.");
    }
    byte[] restored;
    try {
      ObjectNode tree = (ObjectNode) MAPPER.readTree(old);
      tree.put("serial", serial);
      restored = MAPPER.writerWithDefaultPrettyPrinter().writeValueAsBytes(tree);
    } catch (IOException e) {
      throw ReplyException.text(
          500, "history version " + versionId + " is not JSON: " + e.getMessage());
    }
    if (current.isPresent()) {
      history.save(
          current.get(),
          "before restore of " + versionId,
          Math.max(1, target.state().getSpec().getHistory().getKeep()));
    }
    store.write(restored, current);
    events.normal(
        target.state(),
        "StateRestored",
        "history version "
            + versionId
            + " (serial "
            + version.serial()
            + ") restored as serial "
            + serial
            + " by "
            + who);
    return Reply.text(
        200,
        "history version "
            + versionId
            + " (serial "
            + version.serial()
            + ") restored as serial "
            + serial);
  }

  private StateHistory.Version find(StateBackend.Target target, String versionId) {
    return new StateHistory(client, target.names())
        .list().stream()
            .filter(v -> v.id().equals(versionId))
            .findFirst()
            .orElseThrow(
                () ->
                    ReplyException.text(
                        404,
                        "no history version "
                            + versionId
                            + " of "
                            + StateTargets.describe(target)
                            + "; list them at .../history"));
  }

  static boolean conflict(RuntimeException e) {
    return e instanceof KubernetesClientException k && k.getCode() == 409;
  }
}
