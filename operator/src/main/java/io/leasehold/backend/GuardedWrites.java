package io.leasehold.backend;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.leasehold.api.DisplayText;
import io.leasehold.api.StateFacts;
import io.leasehold.operator.EventRecorder;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.state.IncomingState;
import io.leasehold.state.StateHistory;
import io.leasehold.state.StateStore;
import io.leasehold.state.StoredState;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Supplier;

/**
 * POST and DELETE of a state, each guarded: refused, with nothing changed, when it does not carry
 * the current lock, when its lineage is not the stored one, or when its serial does not move the
 * state forward. Every refusal is counted, audited and recorded as a Warning Event.
 */
final class GuardedWrites {

  private final KubernetesClient client;
  private final EventRecorder events;
  private final LeaseholdMetrics metrics;
  private final WriteLock lock;
  private final StateBackend.Audit audit;
  private final Map<String, ReentrantLock> writers = new ConcurrentHashMap<>();

  GuardedWrites(
      KubernetesClient client,
      EventRecorder events,
      LeaseholdMetrics metrics,
      WriteLock lock,
      StateBackend.Audit audit) {
    this.client = client;
    this.events = events;
    this.metrics = metrics;
    this.lock = lock;
    this.audit = audit;
  }

  /**
   * Runs {@code change} while no other write, delete or restore of the same state runs in this
   * process (across processes every Secret write is conditional on the version read).
   */
  <T> T exclusively(StateBackend.Target target, Supplier<T> change) {
    ReentrantLock writer =
        writers.computeIfAbsent(StateBackend.key(target.names()), k -> new ReentrantLock());
    writer.lock();
    try {
      return change.get();
    } finally {
      writer.unlock();
    }
  }

  /** POST: writes the state read from the body if every guard allows it; otherwise nothing. */
  Reply post(
      StateBackend.Target target,
      String lockId,
      IncomingState incoming,
      String contentMd5,
      Requester who,
      long maxStateBytes) {
    if (incoming.tooLarge()) {
      return refuse(
          target,
          who,
          WriteRefusal.TOO_LARGE,
          "the state is over the limit of " + maxStateBytes + " bytes (--max-state-bytes)");
    }
    if (contentMd5 != null && !contentMd5.isBlank() && !contentMd5.trim().equals(incoming.md5())) {
      return refuse(
          target,
          who,
          WriteRefusal.CONTENT_MD5,
          "Content-MD5 "
              + DisplayText.clean(contentMd5, 64)
              + " does not match the body: it was changed or cut in transit");
    }
    if (incoming.notAState() != null) {
      return refuse(
          target,
          who,
          WriteRefusal.NOT_A_STATE,
          "the body is not a Terraform state: " + incoming.notAState().getMessage());
    }
    StateFacts facts = incoming.facts();
    return exclusively(
        target,
        () -> {
          try {
            return write(target, lockId, incoming, facts, who);
          } catch (KubernetesClientException e) {
            if (e.getCode() == 409) {
              return refuse(
                  target,
                  who,
                  WriteRefusal.CONFLICT,
                  "the state Secrets changed while this write was checked (a writer outside the"
                      + " lock); retry");
            }
            throw e;
          }
        });
  }

  private Reply write(
      StateBackend.Target target,
      String lockId,
      IncomingState incoming,
      StateFacts facts,
      Requester who) {
    Optional<WriteRefusal.Problem> notHolder = lock.refusal(target, lockId, "write");
    if (notHolder.isPresent()) {
      return refuse(target, who, notHolder.get());
    }
    Optional<StateStore.Current> current = StateReads.read(client, target, "write");
    if (current.isEmpty()) {
      Optional<String> missing = StateHistory.missingState(client, target.names());
      if (missing.isPresent()) {
        return refuse(target, who, WriteRefusal.STATE_MISSING, missing.get());
      }
    }
    if (current.isPresent()) {
      StateFacts stored = current.get().facts();
      if (!stored.getLineage().equals(facts.getLineage())) {
        return refuse(
            target,
            who,
            WriteRefusal.LINEAGE,
            "lineage "
                + facts.getLineage()
                + " differs from the stored state's lineage "
                + stored.getLineage()
                + ": this is another state (check the backend address and workspace)");
      }
      if (facts.getSerial() < stored.getSerial()) {
        return refuse(
            target,
            who,
            WriteRefusal.SERIAL,
            "serial "
                + facts.getSerial()
                + " is lower than the stored serial "
                + stored.getSerial()
                + ": this write is based on an older state and would undo newer changes");
      }
      if (facts.getSerial().equals(stored.getSerial())) {
        if (sameContent(new StateStore(client, target.names()), current.get(), incoming)) {
          audit.record(target, who, "write of serial " + facts.getSerial() + ": already stored");
          return Reply.text(200, "state serial " + facts.getSerial() + " is already stored");
        }
        return refuse(
            target,
            who,
            WriteRefusal.SERIAL,
            "serial "
                + facts.getSerial()
                + " is already stored with other content: another write with this serial landed"
                + " first, and this one would overwrite it");
      }
      new StateHistory(client, target.names())
          .save(
              current.get(),
              "before serial " + facts.getSerial(),
              target.state().getSpec().getHistory().getKeep());
    }
    new StateStore(client, target.names()).writeParts(incoming.parts(), current);
    metrics.write(true, "none");
    metrics.stateSize(incoming.bytes());
    audit.record(target, who, "write of serial " + facts.getSerial() + ": stored");
    return Reply.text(200, "state serial " + facts.getSerial() + " stored");
  }

  /** DELETE: removes the state (keeping it in history), only when nobody else holds the lock. */
  Reply delete(StateBackend.Target target, String lockId, Requester who) {
    return exclusively(
        target,
        () -> {
          Optional<WriteRefusal.Problem> notHolder = lock.refusal(target, lockId, "delete");
          if (notHolder.isPresent()) {
            return refuse(target, who, notHolder.get());
          }
          Optional<StateStore.Current> current = StateReads.read(client, target, "delete");
          if (current.isEmpty()) {
            return Reply.text(200, "no state stored; nothing to delete");
          }
          // Deleting through the backend always keeps the last version, whatever history.keep
          // says.
          int keep = Math.max(1, target.state().getSpec().getHistory().getKeep());
          new StateHistory(client, target.names())
              .save(current.get(), StateHistory.BEFORE_DELETE, keep);
          new StateStore(client, target.names()).delete(current.get());
          events.normal(
              target.state(),
              "StateDeletedByBackend",
              "state serial "
                  + current.get().facts().getSerial()
                  + " deleted through the HTTP backend by "
                  + who
                  + "; it is kept in history");
          return Reply.text(200, "state deleted; the last version is kept in history");
        });
  }

  private Reply refuse(StateBackend.Target target, Requester who, WriteRefusal.Problem problem) {
    return refuse(target, who, problem.kind(), problem.message());
  }

  Reply refuse(StateBackend.Target target, Requester who, WriteRefusal kind, String why) {
    int status = kind.status;
    String message = why + ". Nothing was written.";
    metrics.write(false, kind.reason);
    audit.record(target, who, "write REFUSED (" + status + "): " + message);
    events.warning(
        target.state(),
        "WriteRefused",
        "write by " + who + " refused (" + status + "): " + message);
    return Reply.text(status, message);
  }

  /**
   * Whether the incoming state is the stored one byte for byte: told apart at once by size or MD5,
   * and otherwise compared by streaming both, so that equal digests are never taken on trust.
   */
  private static boolean sameContent(
      StateStore store, StateStore.Current current, IncomingState incoming) {
    if (current.facts().getRawBytes() != incoming.bytes()
        || !current.md5().equals(incoming.md5())) {
      return false;
    }
    try {
      return StoredState.sameContent(store.refetch(current), incoming.parts());
    } catch (StoredState.ChunkUnreadable e) {
      if (e.unreadable().getCause() instanceof KubernetesClientException changed) {
        // Changed since it was read: refused as a conflict.
        throw changed;
      }
      throw new UncheckedIOException(e);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
