package io.leasehold.backend;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.TerraformState;
import io.leasehold.kube.EventRecorder;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.state.IncomingState;
import io.leasehold.state.StateNames;
import io.leasehold.state.StateOwnership;

/**
 * Terraform's {@code http} backend protocol over the state that Terraform's {@code kubernetes}
 * backend uses, its jobs done by focused classes: {@link StateTargets} finds the state a request
 * addresses, {@link StateReads} serves it, {@link GuardedWrites} writes and deletes it behind every
 * guard, and {@link HistoryService} lists and restores its kept versions. The lock's requests
 * (LOCK, UNLOCK, the lock check of writes) are {@link LockRequests}'; writes reach the lock only
 * through {@link WriteLock}.
 *
 * <p>All methods block on the Kubernetes API; the HTTP layer calls them off its event loop.
 */
public final class StateBackend {

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

  /** A LOCK attempt: acquired, or held by someone (the reply then says who). */
  public record LockAttempt(boolean acquired, Reply reply) {}

  private final KubernetesClient client;
  private final EventRecorder events;
  private final long maxStateBytes;
  private Audit audit = Audit.NONE;
  private final LeaseholdMetrics metrics;
  private final StateTargets targets;
  private final StateReads reads;
  private final GuardedWrites writes;
  private final HistoryService history;

  /**
   * @param locks the lock requests, for the lock check of writes and the restore's lock
   */
  public StateBackend(
      KubernetesClient client,
      EventRecorder events,
      long maxStateBytes,
      WriteLock locks,
      LeaseholdMetrics metrics) {
    this.metrics = metrics;
    this.client = client;
    this.events = events;
    this.maxStateBytes = maxStateBytes;
    this.targets =
        new StateTargets(
            (ns, name) ->
                client.resources(TerraformState.class).inNamespace(ns).withName(name).get(),
            StateOwnership.fromApi(client));
    this.reads = new StateReads(client);
    Audit audited = (target, who, what) -> audit.record(target, who, what);
    this.writes = new GuardedWrites(client, events, metrics, locks, audited);
    this.history = new HistoryService(client, events, locks, writes);
  }

  /**
   * Where a TerraformState's ownership of its names is checked from (the replica's caches; by
   * default the API).
   */
  public StateBackend withOwnership(StateOwnership.Stored ownership) {
    targets.checkOwnership(ownership);
    return this;
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
  static String key(StateNames names) {
    return names.namespace() + "/" + names.name();
  }
}
