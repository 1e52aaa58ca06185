package io.leasehold.backend;

import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.leasehold.api.DisplayText;
import io.leasehold.api.StateFacts;
import io.leasehold.kube.EventRecorder;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.state.IncomingState;
import io.leasehold.state.JournalSettler;
import io.leasehold.state.NotEncryptedException;
import io.leasehold.state.StateHistory;
import io.leasehold.state.StateStore;
import io.leasehold.state.StateWriter;
import io.leasehold.state.StoredState;
import io.leasehold.state.WriteJournal;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Supplier;

/**
 * POST and DELETE of a state, each guarded: refused, with nothing changed, when it does not carry
 * the current lock, when its lineage is not the stored one, when its serial does not move the state
 * forward, or when the TerraformState requires encryption and the state is plaintext. An accepted
 * write goes through the {@link StateWriter}, so it never leaves a torn state, and its reply says
 * what became of it. Every refusal is counted, audited and recorded as a Warning Event.
 */
final class GuardedWrites {

  private final KubernetesClient client;
  private final EventRecorder events;
  private final LeaseholdMetrics metrics;
  private final WriteLock lock;
  private final StateBackend.Audit audit;
  private final Map<String, ReentrantLock> writers = new ConcurrentHashMap<>();
  private final JournalSettler settler;

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
    this.settler = new JournalSettler(client, "leasehold backend");
  }

  /**
   * Runs {@code change} while no other write, delete or restore of the same state runs in this
   * process (across processes the write journal and conditional updates keep them apart).
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
    if (incoming.notAState() instanceof NotEncryptedException fake && requiresEncryption(target)) {
      return refuse(
          target,
          who,
          WriteRefusal.NOT_ENCRYPTED,
          notEncrypted(target, notEncryptedSent(fake.getMessage())));
    }
    if (incoming.notAState() != null) {
      return refuse(
          target,
          who,
          WriteRefusal.NOT_A_STATE,
          "the body is not a Terraform state: " + incoming.notAState().getMessage());
    }
    if (requiresEncryption(target) && !incoming.facts().encrypted()) {
      return refuse(
          target,
          who,
          WriteRefusal.NOT_ENCRYPTED,
          notEncrypted(target, notEncryptedSent(incoming.notEncrypted())));
    }
    return exclusively(
        target,
        () -> {
          try {
            return write(target, lockId, incoming, who);
          } catch (KubernetesClientException e) {
            if (e.getCode() == 409) {
              return refuse(
                  target,
                  who,
                  WriteRefusal.CONFLICT,
                  "the state changed while this write was checked (a writer outside the lock, or"
                      + " another write in progress); retry");
            }
            throw e;
          }
        });
  }

  private Reply write(
      StateBackend.Target target, String lockId, IncomingState incoming, Requester who) {
    StateFacts facts = incoming.facts();
    Optional<WriteRefusal.Problem> notHolder = lock.refusal(target, lockId, who, "write");
    if (notHolder.isPresent()) {
      return refuse(target, who, notHolder.get());
    }
    Optional<Reply> unsettled = settleInterrupted(target, who);
    if (unsettled.isPresent()) {
      return unsettled.get();
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
      int order = StateFacts.compareSerials(facts.getSerial(), stored.getSerial());
      if (order < 0) {
        return refuse(
            target,
            who,
            WriteRefusal.SERIAL,
            "serial "
                + facts.serialText()
                + " is lower than the stored serial "
                + stored.serialText()
                + ": this write is based on an older state and would undo newer changes");
      }
      if (order == 0) {
        if (sameContent(new StateStore(client, target.names()), current.get(), incoming)) {
          audit.record(target, who, "write of serial " + facts.serialText() + ": already stored");
          return Reply.text(200, "state serial " + facts.serialText() + " is already stored");
        }
        return refuse(
            target,
            who,
            WriteRefusal.SERIAL,
            "serial "
                + facts.serialText()
                + " is already stored with other content: another write with this serial landed"
                + " first, and this one would overwrite it");
      }
    }
    StateWriter.Outcome outcome =
        new StateWriter(client, target.names())
            .write(
                new StateWriter.NewVersion(incoming.parts(), facts, incoming.md5()),
                current.map(c -> c.compressed().secrets()).orElse(List.of()),
                current.map(c -> keptVersion(target, c, facts)).orElse(null),
                "written through the HTTP backend by " + shown(who),
                shown(who),
                keep(target));
    return reply(target, who, outcome, incoming.bytes(), facts, lockId);
  }

  /**
   * The reply that says what became of an accepted write (Events for an interrupted one).
   *
   * @param bytes the state's size, for the metric
   */
  Reply reply(StateBackend.Target target, Requester who, StateWriter.Outcome outcome, long bytes) {
    return reply(target, who, outcome, bytes, null, null);
  }

  /**
   * As {@link #reply(StateBackend.Target, Requester, StateWriter.Outcome, long)}, for the audit
   * trail with the state's facts (serial and lineage) and the lock ID the write carried.
   */
  Reply reply(
      StateBackend.Target target,
      Requester who,
      StateWriter.Outcome outcome,
      long bytes,
      StateFacts facts,
      String lockId) {
    String serial = outcome.journal().serial();
    switch (outcome.result()) {
      case WRITTEN -> {
        metrics.write(true, "none");
        metrics.stateSize(bytes);
        AuditLines.of("state-written", target, who)
            .with("serial", serial)
            .with("lineage", facts == null ? null : facts.getLineage())
            .with("lockId", lockId)
            .with("bytes", bytes)
            .with("interrupted", outcome.interrupted() ? "true" : null)
            .log();
        audit.record(target, who, "write of serial " + serial + ": stored");
        if (!outcome.interrupted()) {
          return Reply.text(200, "state serial " + serial + " stored");
        }
        recordInterruption(target, outcome);
        return Reply.text(
            200, "state serial " + serial + " stored: " + StateWriter.describe(outcome));
      }
      case OVERTAKEN -> {
        recordInterruption(target, outcome);
        return refuse(target, who, WriteRefusal.CONFLICT, StateWriter.describe(outcome));
      }
      case NOTHING_WRITTEN -> {
        recordInterruption(target, outcome);
        return refuse(
                target, who, WriteRefusal.INTERRUPTED, StateWriter.describe(outcome) + "; retry")
            .withHeader("Retry-After", "1");
      }
      default -> {
        recordInterruption(target, outcome);
        // Settled here once it may be, whether or not the client asks again.
        settler.later(
            target.names(), keep(target), notices(target), outcome.journal().takeoverAt());
        metrics.write(false, WriteRefusal.INTERRUPTED.reason);
        AuditLines.of("write-refused", target, who)
            .with("serial", serial)
            .with("lockId", lockId)
            .with("status", 503)
            .with("reason", WriteRefusal.INTERRUPTED.reason)
            .log();
        audit.record(target, who, "write of serial " + serial + ": interrupted");
        return Reply.text(
                503,
                StateWriter.describe(outcome)
                    + ". Retry after that: the retry is stored, or found already stored.")
            .withHeader("Retry-After", retryAfter(outcome.journal().takeoverAt()));
      }
    }
  }

  private JournalSettler.Notices notices(StateBackend.Target target) {
    return new JournalSettler.Notices() {
      @Override
      public void normal(String reason, String message) {
        events.normal(target.state(), reason, message);
      }

      @Override
      public void warning(String reason, String message) {
        events.warning(target.state(), reason, message);
      }
    };
  }

  private void recordInterruption(StateBackend.Target target, StateWriter.Outcome outcome) {
    events.warning(target.state(), StateWriter.eventReason(outcome), StateWriter.describe(outcome));
  }

  /**
   * Settles an earlier write of this state that was interrupted and whose writer is gone, before
   * anything else is written; a 503 when one is still in progress.
   */
  Optional<Reply> settleInterrupted(StateBackend.Target target, Requester who) {
    return settleInterrupted(target, 503);
  }

  /**
   * Settles an earlier write of this state that was interrupted and whose writer is gone, before
   * anything else is written; when one is still in progress, the reply (of {@code status}) that
   * says so.
   */
  Optional<Reply> settleInterrupted(StateBackend.Target target, int status) {
    Optional<StateWriter.Outcome> settled =
        settler.settle(target.names(), keep(target), notices(target));
    if (settled.isEmpty() || settled.get().result() != StateWriter.Result.PENDING) {
      return Optional.empty();
    }
    return Optional.of(inProgress(settled.get().journal(), status));
  }

  /** The reply to a change made while another write of the state is in progress. */
  static Reply inProgress(WriteJournal.Entry journal, int status) {
    Instant at = journal.takeoverAt();
    // A writer within its deadline is most likely done in a moment; one past it, not before
    // others may settle its write.
    Instant retry = Instant.now().isBefore(journal.deadline()) ? Instant.now() : at;
    return Reply.text(
            status,
            "another write of this state (serial "
                + journal.serial()
                + " by "
                + journal.writer()
                + ", started "
                + journal.started()
                + ") is in progress or was interrupted; it is settled by "
                + at
                + " at the latest. Nothing was written; retry")
        .withHeader("Retry-After", retryAfter(retry));
  }

  /**
   * The history id of the stored version {@code current}: every version is kept, so it is there
   * unless it was written outside leasehold and the operator has not copied it yet (then it is
   * copied now, before it is replaced).
   */
  String keptVersion(StateBackend.Target target, StateStore.Current current, StateFacts next) {
    StateHistory history = new StateHistory(client, target.names());
    return history
        .find(current.facts(), current.md5())
        .map(StateHistory.Version::id)
        .orElseGet(() -> history.save(current, "replaced by serial " + next.serialText()));
  }

  /** DELETE: removes the state (keeping it in history), only when nobody else holds the lock. */
  Reply delete(StateBackend.Target target, String lockId, Requester who) {
    return exclusively(
        target,
        () -> {
          Optional<WriteRefusal.Problem> notHolder = lock.refusal(target, lockId, who, "delete");
          if (notHolder.isPresent()) {
            return refuse(target, who, notHolder.get());
          }
          Optional<Reply> unsettled = settleInterrupted(target, who);
          if (unsettled.isPresent()) {
            return unsettled.get();
          }
          Optional<StateStore.Current> current = StateReads.read(client, target, "delete");
          if (current.isEmpty()) {
            return Reply.text(200, "no state stored; nothing to delete");
          }
          // Deleting through the backend always keeps the last version, whatever history.keep
          // says, and marks it so that the missing state is not taken for a fault.
          String kept =
              new StateHistory(client, target.names())
                  .save(current.get(), StateHistory.BEFORE_DELETE);
          StateWriter.Outcome outcome =
              new StateWriter(client, target.names())
                  .delete(
                      current.get().compressed().secrets(),
                      kept,
                      current.get().facts().serialText(),
                      shown(who));
          if (outcome.interrupted()) {
            recordInterruption(target, outcome);
            if (outcome.result() != StateWriter.Result.WRITTEN) {
              return Reply.text(
                  outcome.result() == StateWriter.Result.OVERTAKEN ? 409 : 503,
                  StateWriter.describe(outcome));
            }
          }
          AuditLines.of("state-deleted", target, who)
              .with("serial", current.get().facts().serialText())
              .with("lineage", current.get().facts().getLineage())
              .with("lockId", lockId)
              .with("keptAs", kept)
              .log();
          events.normal(
              target.state(),
              "StateDeletedByBackend",
              "state serial "
                  + current.get().facts().serialText()
                  + " deleted through the HTTP backend by "
                  + who
                  + "; it is kept in history as "
                  + kept);
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
    AuditLines.of("write-refused", target, who)
        .with("status", status)
        .with("reason", kind.reason)
        .log();
    audit.record(target, who, "write REFUSED (" + status + "): " + message);
    events.warning(
        target.state(),
        "WriteRefused",
        "write by " + who + " refused (" + status + "): " + message);
    return Reply.text(status, message);
  }

  static boolean requiresEncryption(StateBackend.Target target) {
    return target.state().getSpec().getEncryption().isRequired();
  }

  /** A write refused where encryption is required, saying {@code why} (the state is not). */
  static String notEncrypted(StateBackend.Target target, String why) {
    return StateTargets.describe(target)
        + " requires an encrypted state (spec.encryption.required): "
        + why
        + ". Configure OpenTofu's client-side state encryption (an encryption block with a"
        + " state method, enforced) before writing to it";
  }

  private static String notEncryptedSent(String reason) {
    return "the state sent is not encrypted as OpenTofu encrypts it: " + reason;
  }

  static int keep(StateBackend.Target target) {
    return target.state().getSpec().getHistory().getKeep();
  }

  private static String shown(Requester who) {
    return DisplayText.clean(who.toString(), 200);
  }

  private static String retryAfter(Instant at) {
    long seconds = Duration.between(Instant.now(), at).toSeconds() + 1;
    return Long.toString(Math.max(1, seconds));
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

  /** The Secrets of the stored state, as read (for writes over it). */
  static List<Secret> secretsOf(Optional<StateStore.Current> current) {
    return current.map(c -> c.compressed().secrets()).orElse(List.of());
  }
}
