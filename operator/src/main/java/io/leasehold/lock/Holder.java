package io.leasehold.lock;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.kube.TolerantSerialization;
import java.time.Instant;
import java.util.Map;
import java.util.Optional;

/**
 * Who holds a state's lock, as its Lease says.
 *
 * @param id the lock ID ({@code spec.holderIdentity})
 * @param info Terraform's LockInfo, when the Lease carries it
 * @param vouched leasehold holds and renews the Lease for this holder (a runner Job)
 * @param expired vouched, but not renewed within its duration: the holder may be taken over, a
 *     runner Job only once the Job has ended ({@link LockService#mayTakeOver})
 * @param owner the identity that took the lock through leasehold's backend, when it was
 * @param nested the lock a runner Job's own terraform took under the Job's lock, if any
 * @param unreadable the Lease's spec cannot be read: who holds the lock is not known ({@link
 *     #UNREADABLE_ID})
 * @param pod the pod that took the lock through leasehold's backend with a bound ServiceAccount
 *     token, when one did (an exclusive client lock; never a runner Job's or a plan's)
 */
public record Holder(
    String id,
    Optional<LockInfo> info,
    boolean vouched,
    boolean expired,
    Optional<String> owner,
    Optional<Nested> nested,
    boolean unreadable,
    Optional<HolderPod> pod) {

  /** A lock taken by a runner Job's pod under the Job's lock. */
  public record Nested(LockInfo info, Optional<String> owner) {}

  /**
   * The holder ID shown for a Lease whose spec cannot be read: the lock counts as held, by a holder
   * that cannot be told, and is neither taken over nor released until the Lease is corrected.
   */
  public static final String UNREADABLE_ID = "unreadable-lease";

  /** The holder of {@code lease} at {@code now}, or empty when it is unlocked. */
  public static Optional<Holder> of(Lease lease, Instant now) {
    if (lease != null && lease.getSpec() == null) {
      Optional<TolerantSerialization.Unreadable> unreadable =
          TolerantSerialization.unreadable(lease);
      if (unreadable.isPresent()) {
        return Optional.of(
            new Holder(
                UNREADABLE_ID,
                Optional.empty(),
                false,
                false,
                Optional.empty(),
                Optional.empty(),
                true,
                Optional.empty()));
      }
    }
    if (lease == null || lease.getSpec() == null) {
      return Optional.empty();
    }
    String id = lease.getSpec().getHolderIdentity();
    if (id == null || id.isEmpty()) {
      return Optional.empty();
    }
    Map<String, String> a = LeaseLock.annotations(lease);
    boolean vouched = id.equals(a.get(LeaseLock.HELD_FOR_ANNOTATION));
    boolean expired = vouched && LeaseLock.expired(lease, now);
    Optional<Nested> nested =
        LockInfo.parse(a.get(LeaseLock.CLIENT_LOCK_ANNOTATION))
            .map(
                i ->
                    new Nested(
                        i, Optional.ofNullable(a.get(LeaseLock.CLIENT_LOCK_OWNER_ANNOTATION))));
    return Optional.of(
        new Holder(
            id,
            LockInfo.parse(a.get(LeaseLock.LOCK_INFO_ANNOTATION)),
            vouched,
            expired,
            owner(a, id),
            nested,
            false,
            vouched
                ? Optional.empty()
                : HolderPod.parse(a.get(LeaseLock.HOLDER_POD_ANNOTATION), id)));
  }

  public static Optional<Holder> of(Lease lease) {
    return of(lease, Instant.now());
  }

  /**
   * The identity that took lock {@code id}: the owner recorded with it, unless that owner was
   * recorded for another lock ID (left behind by a client that cleared only the holder). A Lease
   * written before owners named their lock ID counts as its holder's.
   */
  private static Optional<String> owner(Map<String, String> a, String id) {
    String of = a.get(LeaseLock.OWNER_OF_ANNOTATION);
    return of != null && !of.equals(id)
        ? Optional.empty()
        : Optional.ofNullable(a.get(LeaseLock.OWNER_ANNOTATION));
  }

  /**
   * The plans that hold {@code lease}'s lock beside each other, in the order they took it (the
   * first is {@link #of}'s holder); empty unless plans hold it.
   */
  public static java.util.List<Holder> plans(Lease lease) {
    return lease == null
        ? java.util.List.of()
        : PlanHolds.of(lease).stream().map(PlanHolds.Plan::asHolder).toList();
  }

  /** The runner Job this lock is held for, when leasehold holds it for one. */
  public Optional<String> jobUid() {
    return vouched ? LeaseLock.jobUid(id) : Optional.empty();
  }

  /**
   * A short description for {@code kubectl get}'s HOLDER column and for messages: who holds the
   * lock and for what, as in {@code alice@laptop (apply)}; the lock ID when the holder says nobody.
   */
  public String summary() {
    return info.map(
            i -> {
              String who = i.who() == null || i.who().isEmpty() ? id : i.who();
              return i.operation() == null || i.operation().isEmpty()
                  ? who
                  : who + " (" + operation(i.operation()) + ")";
            })
        .orElse(id);
  }

  /** Terraform's {@code OperationTypeApply} as {@code apply}; any other operation as it is. */
  static String operation(String operation) {
    String prefix = "OperationType";
    return operation.startsWith(prefix) && operation.length() > prefix.length()
        ? operation.substring(prefix.length()).toLowerCase(java.util.Locale.ROOT)
        : operation;
  }
}
