package io.leasehold.lock;

import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.api.model.coordination.v1.LeaseBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.leasehold.api.LockStatus;
import io.leasehold.state.StateNames;
import java.time.ZonedDateTime;
import java.util.HashMap;
import java.util.Map;
import java.util.Optional;

/**
 * The state's lock: a {@code coordination.k8s.io/v1} Lease in Terraform's format. Held means {@code
 * spec.holderIdentity} is set; {@code app.terraform.io/lock-info} carries Terraform's LockInfo so
 * that stock Terraform waits and prints who holds it.
 *
 * <p>Every change is an update conditional on the {@code resourceVersion} that was read, so a
 * change made by anyone in between makes it fail rather than overwrite.
 */
public final class LeaseLock {

  public static final String LOCK_INFO_ANNOTATION = "app.terraform.io/lock-info";

  /** On a Lease held for a runner Job: the LockInfo of the Job's own terraform, nested in it. */
  public static final String CLIENT_LOCK_ANNOTATION = "leasehold.io/client-lock";

  /** Set by leasehold on Leases it holds and renews on a holder's behalf. */
  public static final String HELD_FOR_ANNOTATION = "leasehold.io/held-for";

  private final KubernetesClient client;
  private final StateNames names;

  public LeaseLock(KubernetesClient client, StateNames names) {
    this.client = client;
    this.names = names;
  }

  /** Who holds a Lease, as leasehold reports it. */
  public record Holder(String id, Optional<LockInfo> info, boolean vouched) {

    /** The holder of {@code lease}, or empty when it is unlocked. */
    public static Optional<Holder> of(Lease lease) {
      if (lease == null || lease.getSpec() == null) {
        return Optional.empty();
      }
      String id = lease.getSpec().getHolderIdentity();
      if (id == null || id.isEmpty()) {
        return Optional.empty();
      }
      Map<String, String> annotations = lease.getMetadata().getAnnotations();
      String json = annotations == null ? null : annotations.get(LOCK_INFO_ANNOTATION);
      boolean vouched =
          annotations != null
              && annotations.containsKey(HELD_FOR_ANNOTATION)
              && !expired(lease, ZonedDateTime.now());
      return Optional.of(new Holder(id, LockInfo.parse(json), vouched));
    }

    /** A short description for {@code kubectl get}: who, and for what. */
    public String summary() {
      return info.map(
              i -> {
                String who = i.who() == null || i.who().isEmpty() ? id : i.who();
                return i.operation() == null || i.operation().isEmpty()
                    ? who
                    : who + " (" + i.operation() + ")";
              })
          .orElse(id);
    }

    public LockStatus toStatus() {
      LockStatus status = new LockStatus();
      status.setId(id);
      info.ifPresent(
          i -> {
            status.setWho(emptyToNull(i.who()));
            status.setOperation(emptyToNull(i.operation()));
            status.setInfo(emptyToNull(i.info()));
            status.setSince(emptyToNull(i.created()));
            status.setVersion(emptyToNull(i.version()));
          });
      status.setVouched(vouched);
      return status;
    }
  }

  /** Whether a Lease that carries a duration has gone unrenewed for longer than it. */
  public static boolean expired(Lease lease, ZonedDateTime now) {
    var spec = lease.getSpec();
    if (spec == null || spec.getLeaseDurationSeconds() == null) {
      return false;
    }
    ZonedDateTime renewed =
        spec.getRenewTime() != null ? spec.getRenewTime() : spec.getAcquireTime();
    return renewed == null || renewed.plusSeconds(spec.getLeaseDurationSeconds()).isBefore(now);
  }

  /** Reads the Lease from the API server. */
  public Optional<Lease> read() {
    return Optional.ofNullable(
        client.leases().inNamespace(names.namespace()).withName(names.leaseName()).get());
  }

  /**
   * Makes sure the Lease exists, creating it unlocked (as Terraform would find it after an unlock)
   * when it does not. An existing Lease is returned as it is, held or not.
   */
  public Lease ensureExists() {
    Optional<Lease> existing = read();
    if (existing.isPresent()) {
      return existing.get();
    }
    Map<String, String> labels = new HashMap<>(names.terraformLabels());
    labels.put(StateNames.LABEL_STATE, names.name());
    Lease lease =
        new LeaseBuilder()
            .withMetadata(
                new ObjectMetaBuilder()
                    .withName(names.leaseName())
                    .withNamespace(names.namespace())
                    .withLabels(labels)
                    .build())
            .withNewSpec()
            .endSpec()
            .build();
    try {
      return client.leases().inNamespace(names.namespace()).resource(lease).create();
    } catch (KubernetesClientException e) {
      if (e.getCode() == 409) {
        // Someone (stock Terraform taking the lock, say) created it first: theirs stands.
        return read().orElseThrow(() -> e);
      }
      throw e;
    }
  }

  /**
   * Takes the lock for {@code info} if it is free, with an update conditional on the version read.
   * Returns the holder that blocks it, or empty when the lock is now held for {@code info}.
   *
   * @throws KubernetesClientException with code 409 when the Lease changed in between
   */
  public Optional<Holder> tryAcquire(LockInfo info) {
    Lease lease = ensureExists();
    Optional<Holder> holder = Holder.of(lease);
    if (holder.isPresent()) {
      return holder;
    }
    Lease held = heldBy(lease, info);
    client.leases().inNamespace(names.namespace()).resource(held).update();
    return Optional.empty();
  }

  /**
   * An unlocked Lease as Terraform locks it: {@code holderIdentity} set to the lock ID and {@value
   * #LOCK_INFO_ANNOTATION} carrying the LockInfo.
   */
  public static Lease heldBy(Lease unlocked, LockInfo info) {
    return new LeaseBuilder(withAnnotation(unlocked, LOCK_INFO_ANNOTATION, info.toJson()))
        .editOrNewSpec()
        .withHolderIdentity(info.id())
        .endSpec()
        .build();
  }

  /** A copy of {@code lease} with annotation {@code key} set to {@code value}, or removed. */
  public static Lease withAnnotation(Lease lease, String key, String value) {
    Map<String, String> annotations =
        new HashMap<>(
            lease.getMetadata().getAnnotations() == null
                ? Map.of()
                : lease.getMetadata().getAnnotations());
    if (value == null) {
      annotations.remove(key);
    } else {
      annotations.put(key, value);
    }
    return new LeaseBuilder(lease)
        .editMetadata()
        .withAnnotations(annotations)
        .endMetadata()
        .build();
  }

  /**
   * The Lease as it is when leasehold holds it for {@code info}'s holder and vouches for it:
   * Terraform's holder and lock-info, plus a duration, acquire and renew times, one more
   * transition, and the {@value #HELD_FOR_ANNOTATION} annotation naming the holder.
   */
  public static Lease heldFor(Lease lease, LockInfo info, int durationSeconds, ZonedDateTime now) {
    Map<String, String> annotations = new HashMap<>(annotationsOf(lease));
    annotations.put(LOCK_INFO_ANNOTATION, info.toJson());
    annotations.put(HELD_FOR_ANNOTATION, info.id());
    Integer transitions = lease.getSpec() == null ? null : lease.getSpec().getLeaseTransitions();
    return new LeaseBuilder(lease)
        .editMetadata()
        .withAnnotations(annotations)
        .endMetadata()
        .editOrNewSpec()
        .withHolderIdentity(info.id())
        .withLeaseDurationSeconds(durationSeconds)
        .withAcquireTime(now)
        .withRenewTime(now)
        .withLeaseTransitions(transitions == null ? 1 : transitions + 1)
        .endSpec()
        .build();
  }

  /** The Lease with its renew time moved to {@code now} (and its duration to the spec's). */
  public static Lease renewed(Lease lease, int durationSeconds, ZonedDateTime now) {
    return new LeaseBuilder(lease)
        .editSpec()
        .withRenewTime(now)
        .withLeaseDurationSeconds(durationSeconds)
        .endSpec()
        .build();
  }

  /** The holder leasehold vouches for, as named by {@value #HELD_FOR_ANNOTATION}, if any. */
  public static Optional<String> vouchedHolder(Lease lease) {
    if (lease == null || lease.getSpec() == null) {
      return Optional.empty();
    }
    String id = lease.getSpec().getHolderIdentity();
    String heldFor = annotationsOf(lease).get(HELD_FOR_ANNOTATION);
    return id != null && id.equals(heldFor) ? Optional.of(id) : Optional.empty();
  }

  /**
   * Writes {@code changed}, a modified copy of a Lease read at some version, only if the Lease is
   * still at that version. Returns the stored Lease.
   *
   * @throws KubernetesClientException with code 409 when someone changed it in between
   */
  public Lease replace(Lease changed) {
    if (changed.getMetadata().getResourceVersion() == null) {
      throw new IllegalArgumentException("a Lease update must carry the resourceVersion it read");
    }
    return client.leases().inNamespace(names.namespace()).resource(changed).update();
  }

  private static Map<String, String> annotationsOf(Lease lease) {
    Map<String, String> a = lease.getMetadata().getAnnotations();
    return a == null ? Map.of() : a;
  }

  /** What a force-unlock did. */
  public enum ForceUnlockOutcome {
    RELEASED,
    ID_MISMATCH,
    NOT_LOCKED,
    CONFLICT
  }

  public record ForceUnlockResult(ForceUnlockOutcome outcome, Optional<Holder> previousHolder) {}

  /**
   * Releases the lock only if {@code lockId} is the current holder's ID, with an update conditional
   * on the Lease version read, so a lock taken in between is never cleared.
   */
  public ForceUnlockResult forceUnlock(String lockId) {
    Optional<Lease> current = read();
    Optional<Holder> holder = current.flatMap(Holder::of);
    if (holder.isEmpty()) {
      return new ForceUnlockResult(ForceUnlockOutcome.NOT_LOCKED, holder);
    }
    if (!holder.get().id().equals(lockId)) {
      return new ForceUnlockResult(ForceUnlockOutcome.ID_MISMATCH, holder);
    }
    Lease lease = current.get();
    try {
      client.leases().inNamespace(names.namespace()).resource(released(lease)).update();
      return new ForceUnlockResult(ForceUnlockOutcome.RELEASED, holder);
    } catch (KubernetesClientException e) {
      if (e.getCode() == 409) {
        return new ForceUnlockResult(ForceUnlockOutcome.CONFLICT, holder);
      }
      throw e;
    }
  }

  /**
   * A copy of {@code lease} unlocked the way Terraform unlocks: holder and lock-info cleared, and
   * leasehold's own holding fields and any nested client lock with them.
   */
  public static Lease released(Lease lease) {
    Lease copy =
        new LeaseBuilder(lease)
            .editSpec()
            .withHolderIdentity(null)
            .withLeaseDurationSeconds(null)
            .withAcquireTime(null)
            .withRenewTime(null)
            .endSpec()
            .build();
    Map<String, String> annotations = copy.getMetadata().getAnnotations();
    if (annotations != null) {
      Map<String, String> kept = new HashMap<>(annotations);
      kept.remove(LOCK_INFO_ANNOTATION);
      kept.remove(HELD_FOR_ANNOTATION);
      // A lock nested under the released one goes with it.
      kept.remove(CLIENT_LOCK_ANNOTATION);
      copy.getMetadata().setAnnotations(kept);
    }
    return copy;
  }

  private static String emptyToNull(String s) {
    return s == null || s.isEmpty() ? null : s;
  }
}
