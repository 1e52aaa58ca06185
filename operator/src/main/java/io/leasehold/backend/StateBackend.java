package io.leasehold.backend;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.leasehold.api.TerraformState;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.operator.EventRecorder;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.queue.RunnerJobs;
import io.leasehold.state.IncomingState;
import io.leasehold.state.StateNames;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.time.ZonedDateTime;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;

/**
 * Terraform's {@code http} backend protocol over the state and lock that Terraform's {@code
 * kubernetes} backend uses. The lock is kept here; the other jobs are done by focused classes this
 * one hands them to: {@link StateTargets} finds the state a request addresses, {@link StateReads}
 * serves it, {@link GuardedWrites} writes and deletes it behind every guard, and {@link
 * HistoryService} lists and restores its kept versions. They reach the lock only through {@link
 * WriteLock}.
 *
 * <p>All methods block on the Kubernetes API; the HTTP layer calls them off its event loop.
 */
public final class StateBackend implements WriteLock {

  /** Told what the backend did, for a person to follow (the demo prints it). */
  @FunctionalInterface
  public interface Audit {
    Audit NONE = (target, who, what) -> {};

    void record(Target target, Requester who, String what);
  }

  /** Makes the backend once the HTTP layer knows whom to tell about released locks. */
  @FunctionalInterface
  public interface Factory {
    StateBackend create(Consumer<StateNames> released);
  }

  /** Looks up a TerraformState by namespace and name; null when there is none. */
  @FunctionalInterface
  public interface States {
    TerraformState find(String namespace, String name);
  }

  /** The state a request addresses. */
  public record Target(TerraformState state, StateNames names) {}

  /** A LOCK attempt: acquired, or held by someone (the reply then says who). */
  public record LockAttempt(boolean acquired, Reply reply) {}

  private final KubernetesClient client;
  private final EventRecorder events;
  private final long maxStateBytes;
  private final JobPods jobPods;
  private final Consumer<StateNames> released;
  private Audit audit = Audit.NONE;
  private final Map<String, Deque<String>> recentlyReleased = new ConcurrentHashMap<>();
  private final LeaseholdMetrics metrics;
  private final StateTargets targets;
  private final StateReads reads;
  private final GuardedWrites writes;
  private final HistoryService history;

  /**
   * @param jobPods tells whether a requester is a pod of a given Job
   * @param released told after this backend releases a lock, to wake waiting LOCKs
   */
  public StateBackend(
      KubernetesClient client,
      EventRecorder events,
      long maxStateBytes,
      JobPods jobPods,
      Consumer<StateNames> released,
      LeaseholdMetrics metrics) {
    this.metrics = metrics;
    this.client = client;
    this.events = events;
    this.maxStateBytes = maxStateBytes;
    this.jobPods = jobPods;
    this.released = released;
    this.targets =
        new StateTargets(
            (ns, name) ->
                client.resources(TerraformState.class).inNamespace(ns).withName(name).get());
    this.reads = new StateReads(client);
    Audit audited = (target, who, what) -> audit.record(target, who, what);
    this.writes = new GuardedWrites(client, events, metrics, this, audited);
    this.history = new HistoryService(client, events, this, writes);
  }

  /** Where TerraformStates are looked up (the HTTP layer passes its watch cache). */
  public StateBackend withStates(States states) {
    targets.use(states);
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
    return targets.resolve(namespace, name);
  }

  /**
   * GET: the state JSON with its Content-MD5, or 404 when none is stored yet. The JSON is streamed
   * from the gzip data as it is sent, never held whole.
   */
  public Reply get(Target target) {
    return reads.get(target);
  }

  /**
   * POST of a state already received (see {@link IncomingState.Receiver}): written if every guard
   * allows it; otherwise nothing changes.
   */
  public Reply post(
      Target target, String lockId, IncomingState incoming, String contentMd5, Requester who) {
    return writes.post(target, lockId, incoming, contentMd5, who, maxStateBytes);
  }

  /** DELETE: removes the state (keeping it in history), only when nobody else holds the lock. */
  public Reply delete(Target target, String lockId, Requester who) {
    return writes.delete(target, lockId, who);
  }

  /** LOCK: takes the lock for {@code info} now, or says who holds it. */
  @Override
  public LockAttempt tryLock(Target target, LockInfo info, Requester who) {
    if (info.id() == null || info.id().isBlank()) {
      throw ReplyException.text(400, "the LOCK body is not a Terraform LockInfo: it has no ID");
    }
    LeaseLock lock = new LeaseLock(client, target.names());
    for (int attempt = 0; attempt < 5; attempt++) {
      Lease lease = lock.ensureExists();
      Optional<LeaseLock.Holder> holder = LeaseLock.Holder.of(lease);
      try {
        if (holder.isEmpty() || expiredVouched(lease)) {
          if (holder.isPresent()) {
            metrics.lockExpiredTakenOver();
          }
          lock.replace(LeaseLock.heldBy(LeaseLock.released(lease), info));
          audit.record(target, who, "LOCK granted (lock " + info.id() + ")");
          return new LockAttempt(true, Reply.json(200, info.toJson()));
        }
        if (holder.get().id().equals(info.id())) {
          return new LockAttempt(true, Reply.json(200, info.toJson()));
        }
        Optional<String> jobUid = LeaseLock.vouchedHolder(lease).flatMap(RunnerJobs::uidOf);
        if (jobUid.isPresent()
            && jobPods.isPodOfJob(who, lease.getMetadata().getNamespace(), jobUid.get())) {
          Optional<LockInfo> nested = nestedClientLock(lease);
          if (nested.isEmpty() || nested.get().id().equals(info.id())) {
            lock.replace(
                LeaseLock.withAnnotation(lease, LeaseLock.CLIENT_LOCK_ANNOTATION, info.toJson()));
            return new LockAttempt(true, Reply.json(200, info.toJson()));
          }
          return new LockAttempt(false, Reply.json(423, nested.get().toJson()));
        }
        audit.record(target, who, "LOCK: held by " + holder.get().summary() + ", not granted now");
        return new LockAttempt(false, Reply.json(423, holderJson(lease)));
      } catch (KubernetesClientException e) {
        if (e.getCode() != 409) {
          throw e;
        }
        // The Lease changed while we looked: look again.
      }
    }
    throw ReplyException.text(503, "the lock Lease keeps changing; retry");
  }

  /** 423 with the current holder's LockInfo, for a LOCK whose wait ran out. */
  public Reply heldReply(Target target) {
    Lease lease = new LeaseLock(client, target.names()).read().orElse(null);
    if (lease == null || LeaseLock.Holder.of(lease).isEmpty()) {
      // Free now, but others were ahead in line.
      return Reply.text(423, "the lock was taken by LOCKs queued earlier; retry");
    }
    return Reply.json(423, holderJson(lease));
  }

  /**
   * UNLOCK: releases the lock held with the ID in {@code body}; an empty body (what {@code
   * terraform force-unlock} sends) releases whatever lock is held: callers must have checked the
   * requester may force-unlock.
   */
  @Override
  public Reply unlock(Target target, byte[] body, Requester who) {
    boolean force = body == null || body.length == 0;
    Optional<LockInfo> info =
        force ? Optional.empty() : LockInfo.parse(new String(body, StandardCharsets.UTF_8));
    if (!force && (info.isEmpty() || info.get().id() == null || info.get().id().isBlank())) {
      throw ReplyException.text(400, "the UNLOCK body is not a Terraform LockInfo with an ID");
    }
    LeaseLock lock = new LeaseLock(client, target.names());
    for (int attempt = 0; attempt < 5; attempt++) {
      Lease lease = lock.read().orElse(null);
      Optional<LeaseLock.Holder> holder =
          lease == null ? Optional.empty() : LeaseLock.Holder.of(lease);
      try {
        if (holder.isEmpty()) {
          if (force) {
            return Reply.text(200, "the state is not locked");
          }
          return Reply.text(
              409,
              "lock "
                  + info.get().id()
                  + " is not held: the state is unlocked"
                  + releasedNote(target, info.get().id()));
        }
        LeaseLock.Holder h = holder.get();
        Optional<LockInfo> nested = nestedClientLock(lease);
        if (force) {
          metrics.lockForced("http");
          lock.replace(LeaseLock.released(lease));
          remember(target, h.id());
          released.accept(target.names());
          events.warning(
              target.state(),
              "ForceUnlocked",
              "lock "
                  + h.id()
                  + " held by "
                  + h.summary()
                  + " was force-unlocked through the HTTP backend by "
                  + who);
          return Reply.text(200, "lock " + h.id() + " held by " + h.summary() + " released");
        }
        String id = info.get().id();
        if (h.id().equals(id)) {
          h.info()
              .map(LockInfo::created)
              .flatMap(StateBackend::instant)
              .ifPresent(
                  t -> metrics.lockHeld(java.time.Duration.between(t, Instant.now()), "client"));
          lock.replace(LeaseLock.released(lease));
          remember(target, id);
          released.accept(target.names());
          audit.record(target, who, "UNLOCK (lock " + id + ")");
          return Reply.text(200, "lock " + id + " released");
        }
        if (nested.isPresent() && nested.get().id().equals(id)) {
          lock.replace(LeaseLock.withAnnotation(lease, LeaseLock.CLIENT_LOCK_ANNOTATION, null));
          remember(target, id);
          return Reply.text(200, "lock " + id + " released; the runner Job keeps the state's lock");
        }
        return Reply.json(423, holderJson(lease));
      } catch (KubernetesClientException e) {
        if (e.getCode() != 409) {
          throw e;
        }
      }
    }
    throw ReplyException.text(503, "the lock Lease keeps changing; retry");
  }

  /** GET history: the kept versions, newest first, as JSON. */
  public Reply history(Target target) {
    return history.list(target);
  }

  /** GET one kept version's state JSON. */
  public Reply historyVersion(Target target, String versionId) {
    return history.version(target, versionId);
  }

  /**
   * Restores a kept version as a new version: its content with the next serial, written under the
   * lock (taken for the restore and released after), the replaced state kept in history.
   */
  public Reply restore(Target target, String versionId, Requester who) {
    return history.restore(target, versionId, who);
  }

  /** Why a write or delete carrying {@code lockId} may not go ahead now, if it may not. */
  @Override
  public Optional<WriteRefusal.Problem> refusal(Target target, String lockId, String what) {
    Lease lease = new LeaseLock(client, target.names()).read().orElse(null);
    return lockProblem(target, lease, lockId, what);
  }

  /** Why a write or delete carrying {@code lockId} may not go ahead, if it may not. */
  private Optional<WriteRefusal.Problem> lockProblem(
      Target target, Lease lease, String lockId, String what) {
    Optional<LeaseLock.Holder> holder =
        lease == null ? Optional.empty() : LeaseLock.Holder.of(lease);
    boolean hasId = lockId != null && !lockId.isBlank();
    if (holder.isEmpty()) {
      if (hasId) {
        return WriteRefusal.Problem.of(
            WriteRefusal.STALE_LOCK,
            "lock "
                + lockId
                + " no longer holds the state: it was released, broken or expired"
                + releasedNote(target, lockId)
                + "; take the lock again and re-run");
      }
      return Optional.empty();
    }
    LeaseLock.Holder h = holder.get();
    if (!hasId) {
      return WriteRefusal.Problem.of(
          WriteRefusal.LOCKED,
          "locked by "
              + h.summary()
              + " (lock ID "
              + h.id()
              + "); a "
              + what
              + " without the lock (-lock=false) is refused while the state is locked");
    }
    if (LeaseLock.vouchedHolder(lease).isPresent()
        && LeaseLock.expired(lease, ZonedDateTime.now())) {
      return WriteRefusal.Problem.of(
          WriteRefusal.STALE_LOCK,
          "lock "
              + h.id()
              + " expired: its holder stopped renewing it; take the lock again and re-run");
    }
    if (h.id().equals(lockId)) {
      return Optional.empty();
    }
    Optional<LockInfo> nested = nestedClientLock(lease);
    if (nested.isPresent() && nested.get().id().equals(lockId)) {
      return Optional.empty();
    }
    return WriteRefusal.Problem.of(
        WriteRefusal.STALE_LOCK,
        "lock "
            + lockId
            + " does not hold the state"
            + releasedNote(target, lockId)
            + "; it is locked by "
            + h.summary()
            + " (lock ID "
            + h.id()
            + ")");
  }

  private static boolean expiredVouched(Lease lease) {
    return LeaseLock.vouchedHolder(lease).isPresent()
        && LeaseLock.expired(lease, ZonedDateTime.now());
  }

  static Optional<LockInfo> nestedClientLock(Lease lease) {
    return LockInfo.parse(annotations(lease).get(LeaseLock.CLIENT_LOCK_ANNOTATION));
  }

  private static String holderJson(Lease lease) {
    String json = annotations(lease).get(LeaseLock.LOCK_INFO_ANNOTATION);
    if (LockInfo.parse(json).isPresent()) {
      return json;
    }
    return new LockInfo(
            lease.getSpec().getHolderIdentity(),
            "",
            "held without Terraform lock info",
            "",
            "",
            "",
            "")
        .toJson();
  }

  private static Map<String, String> annotations(Lease lease) {
    Map<String, String> a = lease.getMetadata().getAnnotations();
    return a == null ? Map.of() : a;
  }

  private void remember(Target target, String id) {
    Deque<String> ids =
        recentlyReleased.computeIfAbsent(key(target.names()), k -> new ArrayDeque<>());
    synchronized (ids) {
      ids.addFirst(id + "@" + Instant.now());
      while (ids.size() > 32) {
        ids.removeLast();
      }
    }
  }

  private String releasedNote(Target target, String id) {
    Deque<String> ids = recentlyReleased.get(key(target.names()));
    if (ids == null) {
      return "";
    }
    synchronized (ids) {
      for (String entry : ids) {
        if (entry.startsWith(id + "@")) {
          return " (it was released at " + entry.substring(id.length() + 1) + ")";
        }
      }
    }
    return "";
  }

  private static Optional<Instant> instant(String text) {
    try {
      return Optional.of(java.time.OffsetDateTime.parse(text).toInstant());
    } catch (RuntimeException e) {
      return Optional.empty();
    }
  }

  static String key(StateNames names) {
    return names.namespace() + "/" + names.name();
  }
}
