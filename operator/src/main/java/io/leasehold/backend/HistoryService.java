package io.leasehold.backend;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.SecretBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.leasehold.api.DisplayText;
import io.leasehold.kube.EventRecorder;
import io.leasehold.lock.LockInfo;
import io.leasehold.state.IncomingState;
import io.leasehold.state.StateHistory;
import io.leasehold.state.StateJson;
import io.leasehold.state.StateStore;
import io.leasehold.state.StateUnreadableException;
import io.leasehold.state.StateWriter;
import io.leasehold.state.StoredState;
import io.leasehold.state.WriteJournal;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.math.BigInteger;
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
              .put(
                  "serial",
                  v.serial() == null ? null : new BigInteger(Long.toUnsignedString(v.serial())))
              .put("encrypted", v.encrypted())
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
          500, "history version " + version.id() + " cannot be read: " + e.getMessage());
    }
  }

  /**
   * Restores a kept version as a new version: its content with the next serial, written under the
   * lock (taken for the restore and released after) like any write, the replaced version kept.
   */
  Reply restore(StateBackend.Target target, String versionId, Requester who) {
    StateHistory history = new StateHistory(client, target.names());
    StateHistory.Version version = find(target, versionId);
    if (version.encrypted()) {
      return Reply.text(
          409,
          "history version "
              + versionId
              + " is an OpenTofu-encrypted state: its serial is sealed inside the encryption too,"
              + " so leasehold cannot give it a new serial. Download it (GET .../history/"
              + versionId
              + ") and push it with OpenTofu (tofu state push -force), which encrypts it anew."
              + " Nothing was written.");
    }
    if (GuardedWrites.requiresEncryption(target)) {
      return Reply.text(
          409,
          GuardedWrites.notEncrypted(target, "the version is plaintext")
              + ". Nothing was written.");
    }
    byte[] old;
    try {
      old = history.load(version);
    } catch (StateUnreadableException e) {
      throw ReplyException.text(
          500, "history version " + versionId + " cannot be read: " + e.getMessage());
    }
    // Refused before the lock is taken, so that a refusal changes nothing, not even the Lease;
    // checked again under the lock.
    Optional<StateStore.Current> now;
    try {
      now = new StateStore(client, target.names()).read(false);
    } catch (StateUnreadableException e) {
      now = Optional.empty();
    }
    Optional<Reply> refused = refusal(version, now);
    if (refused.isPresent()) {
      return refused.get();
    }
    Optional<WriteJournal.Entry> writing = new WriteJournal(client, target.names()).read();
    if (writing.isPresent() && !writing.get().abandoned(Instant.now())) {
      return GuardedWrites.inProgress(writing.get(), 409);
    }
    LockInfo info =
        new LockInfo(
            "leasehold-restore-" + UUID.randomUUID(),
            "restore",
            "restoring history version " + versionId,
            DisplayText.clean(who.toString(), 200),
            "leasehold",
            Instant.now().toString(),
            target.names().secretName());
    StateBackend.LockAttempt attempt = lock.tryLock(target, info, who);
    if (!attempt.acquired()) {
      return Reply.text(
          423,
          "the state is locked, and a restore needs the lock: "
              + attempt.reply().bodyText()
              + " Nothing was written.");
    }
    try {
      return writes.exclusively(
          target,
          () -> {
            try {
              return restoreLocked(target, version, old, who);
            } catch (KubernetesClientException e) {
              if (e.getCode() == 409) {
                return Reply.text(
                    409,
                    "the state changed while history version "
                        + versionId
                        + " was being restored (another write landed first); nothing was"
                        + " restored: look at the state and retry");
              }
              throw e;
            }
          });
    } finally {
      lock.unlock(target, info.toJson().getBytes(StandardCharsets.UTF_8), who);
    }
  }

  private Reply restoreLocked(
      StateBackend.Target target, StateHistory.Version version, byte[] old, Requester who) {
    String versionId = version.id();
    Optional<Reply> unsettled = writes.settleInterrupted(target, 409);
    if (unsettled.isPresent()) {
      return unsettled.get();
    }
    StateHistory history = new StateHistory(client, target.names());
    StateStore store = new StateStore(client, target.names());
    String by = DisplayText.clean(who.toString(), 200);
    Optional<StateStore.Current> current;
    try {
      current = store.read();
    } catch (StateUnreadableException unreadable) {
      // The documented way out of a corrupt state: keep the corrupt Secrets in history as
      // they are, then write the chosen version over them.
      List<Secret> corrupt = store.secrets();
      String kept =
          history.saveUnreadable(corrupt, "unreadable, replaced by restore of " + versionId);
      IncomingState restored = incoming(old);
      StateWriter.Outcome outcome =
          new StateWriter(client, target.names())
              .write(
                  new StateWriter.NewVersion(restored.parts(), restored.facts(), restored.md5()),
                  corrupt.stream().map(HistoryService::withoutData).toList(),
                  kept,
                  "restore of " + versionId + " by " + by,
                  by,
                  GuardedWrites.keep(target));
      if (outcome.result() != StateWriter.Result.WRITTEN) {
        return writes.reply(target, who, outcome, restored.bytes(), restored.facts(), null);
      }
      events.warning(
          target.state(),
          "StateRestored",
          "the unreadable state (kept in history as "
              + kept
              + ") was replaced by history version "
              + versionId
              + " (serial "
              + version.serialText()
              + ") by "
              + who);
      return Reply.text(
          200,
          "history version "
              + versionId
              + " (serial "
              + version.serialText()
              + ") restored over the unreadable state, which is kept in history as "
              + kept);
    }
    Optional<Reply> refused = refusal(version, current);
    if (refused.isPresent()) {
      return refused.get();
    }
    long serial = current.isPresent() ? current.get().facts().getSerial() + 1 : version.serial();
    IncomingState restored;
    try {
      restored = incoming(StateJson.withSerial(old, serial));
    } catch (IOException e) {
      throw ReplyException.text(
          500, "history version " + versionId + " is not a state: " + e.getMessage());
    }
    StateWriter.Outcome outcome =
        new StateWriter(client, target.names())
            .write(
                new StateWriter.NewVersion(restored.parts(), restored.facts(), restored.md5()),
                GuardedWrites.secretsOf(current),
                current.map(c -> writes.keptVersion(target, c, restored.facts())).orElse(null),
                "restore of " + versionId + " by " + by,
                by,
                GuardedWrites.keep(target));
    if (outcome.result() != StateWriter.Result.WRITTEN) {
      return writes.reply(target, who, outcome, restored.bytes(), restored.facts(), null);
    }
    events.normal(
        target.state(),
        "StateRestored",
        "history version "
            + versionId
            + " (serial "
            + version.serialText()
            + ") restored as serial "
            + Long.toUnsignedString(serial)
            + " by "
            + who);
    return Reply.text(
        200,
        "history version "
            + versionId
            + " (serial "
            + version.serialText()
            + ") restored as serial "
            + Long.toUnsignedString(serial));
  }

  /** Why {@code version} cannot be restored over {@code current}, if it cannot. */
  private static Optional<Reply> refusal(
      StateHistory.Version version, Optional<StateStore.Current> current) {
    if (current.isEmpty()) {
      return Optional.empty();
    }
    if (!current.get().facts().getLineage().equals(version.lineage())) {
      return Optional.of(
          Reply.text(
              409,
              "history version "
                  + version.id()
                  + " has lineage "
                  + version.lineage()
                  + " but the stored state has lineage "
                  + current.get().facts().getLineage()
                  + ": delete the state first to restore another lineage. Nothing was written."));
    }
    if (current.get().facts().getSerial() == -1L) {
      return Optional.of(
          Reply.text(
              409,
              "the stored serial is 18446744073709551615, the largest Terraform knows: a restore"
                  + " needs a higher one. Nothing was written."));
    }
    return Optional.empty();
  }

  /** A state held in memory, as a write takes it. */
  private static IncomingState incoming(byte[] json) {
    try {
      IncomingState state = IncomingState.read(new ByteArrayInputStream(json), Long.MAX_VALUE);
      if (state.notAState() != null) {
        throw ReplyException.text(
            500, "the version is not a readable state: " + state.notAState().getMessage());
      }
      return state;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private static Secret withoutData(Secret s) {
    return new SecretBuilder(s).withData(null).withStringData(null).build();
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
                            + DisplayText.clean(versionId, 80)
                            + " of "
                            + StateTargets.describe(target)
                            + "; list them at .../history"));
  }
}
