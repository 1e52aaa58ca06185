package io.leasehold.backend;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.leasehold.api.StateFacts;
import io.leasehold.api.TerraformState;
import io.leasehold.kube.EventRecorder;
import io.leasehold.lock.LockInfo;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.state.IncomingState;
import io.leasehold.state.StateHistory;
import io.leasehold.state.StateNames;
import io.leasehold.state.StateOwnership;
import io.leasehold.state.StateStore;
import io.leasehold.state.StateUnreadableException;
import io.leasehold.state.StoredState;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.ReentrantLock;
import java.util.regex.Pattern;

/**
 * Terraform's {@code http} backend protocol over the state and lock that Terraform's {@code
 * kubernetes} backend uses, with every write guarded: a write is refused, and nothing changes, when
 * it does not carry the current lock, when its lineage is not the stored one, or when its serial
 * does not move the state forward.
 *
 * <p>All methods block on the Kubernetes API; the HTTP layer calls them off its event loop.
 */
public final class StateBackend {

  private static final com.fasterxml.jackson.databind.ObjectMapper MAPPER =
      new com.fasterxml.jackson.databind.ObjectMapper();
  private static final Pattern DNS_LABEL = Pattern.compile("[a-z0-9]([-a-z0-9]*[a-z0-9])?");

  /** Told what the backend did, for a person to follow (the demo prints it). */
  @FunctionalInterface
  public interface Audit {
    Audit NONE = (target, who, what) -> {};

    void record(Target target, Requester who, String what);
  }

  /** Makes the backend once the HTTP layer has its lock requests. */
  @FunctionalInterface
  public interface Factory {
    StateBackend create(LockRequests locks);
  }

  /** Looks up a TerraformState by namespace and name; null when there is none. */
  @FunctionalInterface
  public interface States {
    TerraformState find(String namespace, String name);
  }

  /** The state a request addresses. */
  public record Target(TerraformState state, StateNames names) {}

  private final KubernetesClient client;
  private final EventRecorder events;
  private final long maxStateBytes;
  private final LockRequests locks;
  private Audit audit = Audit.NONE;
  private States states;
  private StateOwnership.Stored ownership;
  private final Map<String, ReentrantLock> writers = new ConcurrentHashMap<>();

  private final LeaseholdMetrics metrics;

  /**
   * @param locks the lock requests, for the lock check of writes and the restore's lock
   */
  public StateBackend(
      KubernetesClient client,
      EventRecorder events,
      long maxStateBytes,
      LockRequests locks,
      LeaseholdMetrics metrics) {
    this.metrics = metrics;
    this.client = client;
    this.events = events;
    this.maxStateBytes = maxStateBytes;
    this.locks = locks;
    this.states =
        (ns, name) -> client.resources(TerraformState.class).inNamespace(ns).withName(name).get();
    this.ownership = StateOwnership.fromApi(client);
  }

  /**
   * Where a TerraformState's ownership of its names is checked from (the replica's caches; by
   * default the API).
   */
  public StateBackend withOwnership(StateOwnership.Stored ownership) {
    this.ownership = ownership;
    return this;
  }

  /** Where TerraformStates are looked up (the HTTP layer passes its watch cache). */
  public StateBackend withStates(States states) {
    this.states = states;
    return this;
  }

  public StateBackend withAudit(Audit audit) {
    this.audit = audit;
    return this;
  }

  public long maxStateBytes() {
    return maxStateBytes;
  }

  /** Finds the TerraformState at {@code /v1/states/NS/NAME}. */
  public Target resolve(String namespace, String name) {
    if (namespace == null || namespace.length() > 63 || !DNS_LABEL.matcher(namespace).matches()) {
      throw ReplyException.text(
          400, "'" + namespace + "' is not a namespace name: the address is /v1/states/NS/NAME");
    }
    if (name == null || name.length() > 63 || !DNS_LABEL.matcher(name).matches()) {
      throw ReplyException.text(
          400,
          "'"
              + name
              + "' is not a TerraformState name (a DNS label): the address is /v1/states/NS/NAME");
    }
    TerraformState state = states.find(namespace, name);
    if (state == null) {
      throw ReplyException.text(
          404,
          "no TerraformState "
              + namespace
              + "/"
              + name
              + ": create it (kubectl apply) before using this backend address");
    }
    if (state.getSpec() == null) {
      throw ReplyException.text(
          422,
          "TerraformState "
              + namespace
              + "/"
              + name
              + " has no spec, and spec.workspace selects the state: restore the spec");
    }
    StateNames names = new StateNames(namespace, name, state.getSpec().getWorkspace());
    names
        .problem()
        .ifPresent(
            p -> {
              throw ReplyException.text(422, "TerraformState " + namespace + "/" + name + ": " + p);
            });
    // One state, one owner: nothing of another TerraformState's state is reached through this one.
    StateOwnership.check(state, ownership)
        .ifPresent(
            c -> {
              throw ReplyException.text(
                  409,
                  "TerraformState "
                      + namespace
                      + "/"
                      + name
                      + " is refused (NameCollision): "
                      + c.message());
            });
    return new Target(state, names);
  }

  /**
   * GET: the state JSON with its Content-MD5, or 404 when none is stored yet. The JSON is streamed
   * from the gzip data as it is sent, never held whole.
   */
  public Reply get(Target target) {
    Optional<StateStore.Current> current = readOrFail(target, "read");
    if (current.isEmpty()) {
      Optional<String> missing = missingState(client, target.names());
      if (missing.isPresent()) {
        return Reply.text(500, missing.get());
      }
      return Reply.text(404, "no state stored yet for " + describe(target));
    }
    return stateReply(current.get().compressed(), current.get().facts(), current.get().md5());
  }

  private static Reply stateReply(StoredState.Compressed compressed, StateFacts facts, String md5) {
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

  /** POST: writes the state if every guard allows it; otherwise changes nothing. */
  public Reply post(Target target, String lockId, byte[] body, String contentMd5, Requester who) {
    try {
      return post(target, lockId, new ByteArrayInputStream(body), contentMd5, who);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /**
   * POST with the body as a stream: it is read once, as it arrives, into its MD5, its facts and its
   * gzip'd parts; only the parts are kept. The state is written only after every guard passed.
   *
   * @throws IOException when the body cannot be read (the client went away); nothing is written
   */
  public Reply post(
      Target target, String lockId, InputStream body, String contentMd5, Requester who)
      throws IOException {
    IncomingState incoming = IncomingState.read(body, maxStateBytes);
    if (incoming.tooLarge()) {
      return refuse(
          target,
          who,
          Refusal.TOO_LARGE,
          "the state is over the limit of " + maxStateBytes + " bytes (--max-state-bytes)");
    }
    if (contentMd5 != null && !contentMd5.isBlank() && !contentMd5.trim().equals(incoming.md5())) {
      return refuse(
          target,
          who,
          Refusal.CONTENT_MD5,
          "Content-MD5 "
              + contentMd5
              + " does not match the body: it was changed or cut in transit");
    }
    if (incoming.notAState() != null) {
      return refuse(
          target,
          who,
          Refusal.NOT_A_STATE,
          "the body is not a Terraform state: " + incoming.notAState().getMessage());
    }
    StateFacts facts = incoming.facts();
    ReentrantLock writer = writers.computeIfAbsent(key(target.names()), k -> new ReentrantLock());
    writer.lock();
    try {
      Optional<Reply> notHolder = refusalForLock(target, who, lockId, "write");
      if (notHolder.isPresent()) {
        return notHolder.get();
      }
      Optional<StateStore.Current> current = readOrFail(target, "write");
      if (current.isEmpty()) {
        Optional<String> missing = missingState(client, target.names());
        if (missing.isPresent()) {
          return refuse(target, who, Refusal.STATE_MISSING, missing.get());
        }
      }
      if (current.isPresent()) {
        StateFacts stored = current.get().facts();
        if (!stored.getLineage().equals(facts.getLineage())) {
          return refuse(
              target,
              who,
              Refusal.LINEAGE,
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
              Refusal.SERIAL,
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
              Refusal.SERIAL,
              "serial "
                  + facts.getSerial()
                  + " is already stored with other content: another write with this serial landed first, and this one would overwrite it");
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
    } catch (KubernetesClientException e) {
      if (e.getCode() == 409) {
        return refuse(
            target,
            who,
            Refusal.CONFLICT,
            "the state Secrets changed while this write was checked (a writer outside the lock); retry");
      }
      throw e;
    } finally {
      writer.unlock();
    }
  }

  /** DELETE: removes the state (keeping it in history), only when nobody else holds the lock. */
  public Reply delete(Target target, String lockId, Requester who) {
    ReentrantLock writer = writers.computeIfAbsent(key(target.names()), k -> new ReentrantLock());
    writer.lock();
    try {
      Optional<Reply> notHolder = refusalForLock(target, who, lockId, "delete");
      if (notHolder.isPresent()) {
        return notHolder.get();
      }
      Optional<StateStore.Current> current = readOrFail(target, "delete");
      if (current.isEmpty()) {
        return Reply.text(200, "no state stored; nothing to delete");
      }
      // Deleting through the backend always keeps the last version, whatever history.keep says.
      int keep = Math.max(1, target.state().getSpec().getHistory().getKeep());
      new StateHistory(client, target.names()).save(current.get(), "before delete", keep);
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
    } finally {
      writer.unlock();
    }
  }

  /** GET history: the kept versions, newest first, as JSON. */
  public Reply history(Target target) {
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
  public Reply historyVersion(Target target, String versionId) {
    StateHistory.Version version = findVersion(target, versionId);
    try {
      StoredState.Compressed compressed =
          new StateHistory(client, target.names()).compressed(version);
      StoredState.Inspection inspection = StoredState.inspect(target.names(), compressed);
      return stateReply(compressed, inspection.facts(), inspection.md5());
    } catch (StateUnreadableException e) {
      throw ReplyException.text(
          500, "history version " + versionId + " cannot be read: " + e.getMessage());
    }
  }

  /**
   * Restores a kept version as a new version: its content with the next serial, written under the
   * lock (taken for the restore and released after), the replaced state kept in history.
   */
  public Reply restore(Target target, String versionId, Requester who) {
    StateHistory history = new StateHistory(client, target.names());
    StateHistory.Version version = findVersion(target, versionId);
    byte[] old;
    try {
      old = history.load(version);
    } catch (StateUnreadableException e) {
      throw ReplyException.text(
          500, "history version " + versionId + " cannot be read: " + e.getMessage());
    }
    LockInfo info =
        new LockInfo(
            "leasehold-restore-" + java.util.UUID.randomUUID(),
            "restore",
            "restoring history version " + versionId,
            who.toString(),
            "leasehold",
            Instant.now().toString(),
            target.names().secretName());
    io.leasehold.lock.Caller caller = locks.caller(who);
    LockWaiters.Outcome attempt = locks.lockNow(target, info, who, caller);
    if (attempt.grant().isEmpty()) {
      return Reply.text(
          attempt.reply().status() == 423 ? 423 : attempt.reply().status(),
          "the state is locked, and a restore needs the lock: " + attempt.reply().bodyText());
    }
    try {
      StateStore store = new StateStore(client, target.names());
      Optional<StateStore.Current> current;
      try {
        current = store.read();
      } catch (StateUnreadableException unreadable) {
        // The documented way out of a corrupt state: keep the corrupt Secrets in history as
        // they are, then write the chosen version over them.
        List<io.fabric8.kubernetes.api.model.Secret> corrupt = store.secrets();
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
      com.fasterxml.jackson.databind.node.ObjectNode tree;
      byte[] restored;
      try {
        tree = (com.fasterxml.jackson.databind.node.ObjectNode) MAPPER.readTree(old);
        tree.put("serial", serial);
        restored = MAPPER.writerWithDefaultPrettyPrinter().writeValueAsBytes(tree);
      } catch (java.io.IOException e) {
        throw ReplyException.text(
            500, "history version " + versionId + " is not JSON: " + e.getMessage());
      }
      if (current.isPresent()) {
        history.save(
            current.get(),
            "before restore of " + versionId,
            Math.max(1, target.state().getSpec().getHistory().getKeep()));
      }
      new StateStore(client, target.names()).write(restored, current);
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
    } finally {
      locks.unlock(target, info, who, caller);
    }
  }

  private StateHistory.Version findVersion(Target target, String versionId) {
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
                            + describe(target)
                            + "; list them at .../history"));
  }

  public static Optional<String> missingState(KubernetesClient client, StateNames names) {
    return io.leasehold.state.MissingState.of(client, names);
  }

  /**
   * The refusal (423 locked by another, 409 not the holder, 403 another identity's lock) of a write
   * or delete, if any.
   */
  private Optional<Reply> refusalForLock(Target target, Requester who, String lockId, String what) {
    return locks
        .checkWrite(target, lockId, who, locks.caller(who), what)
        .map(
            r ->
                refuse(
                    target,
                    who,
                    switch (r.refusal()) {
                      case LOCKED -> Refusal.LOCKED;
                      case NOT_OWNER -> Refusal.NOT_OWNER;
                      case DELETING -> Refusal.DELETING;
                      default -> Refusal.STALE_LOCK;
                    },
                    r.message()));
  }

  private Optional<StateStore.Current> readOrFail(Target target, String what) {
    try {
      // Only a read serves the gzip data; a write or delete fetches it again if it needs it.
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

  private Reply refuse(Target target, Requester who, Refusal kind, String why) {
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

  /** Why a write is refused: its HTTP status and the metric's fixed reason (never a name). */
  private enum Refusal {
    TOO_LARGE(413, "too_large"),
    CONTENT_MD5(400, "content_md5"),
    NOT_A_STATE(400, "not_a_state"),
    LOCKED(423, "locked"),
    STALE_LOCK(409, "stale_lock"),
    NOT_OWNER(403, "not_owner"),
    STATE_MISSING(409, "state_missing"),
    DELETING(409, "deleting"),
    LINEAGE(409, "lineage"),
    SERIAL(409, "serial"),
    CONFLICT(409, "conflict");

    final int status;
    final String reason;

    Refusal(int status, String reason) {
      this.status = status;
      this.reason = reason;
    }
  }

  private static String describe(Target target) {
    return "TerraformState " + target.names().namespace() + "/" + target.names().name();
  }

  static String key(StateNames names) {
    return names.namespace() + "/" + names.name();
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
