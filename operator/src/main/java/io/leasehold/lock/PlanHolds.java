package io.leasehold.lock;

import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.api.model.coordination.v1.LeaseBuilder;
import io.leasehold.api.DisplayText;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * The lock held by plans, beside each other. Plans never write the state, so any number of them (up
 * to {@code spec.queue.maxParallelPlans}) may hold the lock at once, never beside an apply.
 *
 * <p>On the Lease, the first plan holds it the way Terraform locks ({@code holderIdentity}, {@code
 * app.terraform.io/lock-info}, the owner), so stock Terraform sees the state locked while any plan
 * runs; {@value #ANNOTATION} lists every plan that holds it, the first one included. The list
 * counts only while its first plan is the Lease's holder: a Lease rewritten by a stock client (or
 * by hand) drops it.
 */
final class PlanHolds {

  /** Every plan that holds the lock, in the order they took it. */
  static final String ANNOTATION = "leasehold.io/plans";

  /** The operation Terraform names in the LockInfo of {@code terraform plan}. */
  static final String PLAN_OPERATION = "OperationTypePlan";

  /** Most characters of Who and Created a plan's entry keeps: it is for people to read. */
  static final int KEPT = 64;

  private static final ObjectMapper JSON = new ObjectMapper();

  private PlanHolds() {}

  /**
   * One plan that holds the lock.
   *
   * @param owner a digest of the identity that took it ({@link Caller#digest})
   */
  record Plan(
      @JsonProperty("id") String id,
      @JsonProperty("owner") String owner,
      @JsonProperty("who") String who,
      @JsonProperty("created") String created) {

    static Plan of(LockInfo info, String identity) {
      return new Plan(
          info.id(),
          Caller.digest(identity),
          DisplayText.clean(info.who() == null ? "" : info.who(), KEPT),
          DisplayText.clean(info.created() == null ? "" : info.created(), KEPT));
    }

    /** Whether {@code caller} took this plan's lock. */
    boolean ownedBy(Caller caller) {
      return owner.equals(Caller.digest(caller.identity()));
    }

    /** Whether {@code info} is the LockInfo this plan took the lock with (a retry). */
    boolean sameRequest(LockInfo info, String identity) {
      return equals(of(info, identity));
    }

    /** This plan as a holder, for answers and reports. */
    Holder asHolder() {
      return new Holder(
          id,
          Optional.of(new LockInfo(id, PLAN_OPERATION, "", who, "", created, "")),
          false,
          false,
          Optional.empty(),
          Optional.empty(),
          false,
          Optional.empty());
    }
  }

  /** Whether {@code info} asks for the lock for a plan. */
  static boolean isPlan(LockInfo info) {
    return PLAN_OPERATION.equals(info.operation());
  }

  /** The plans holding {@code lease}'s lock; empty when it is free or held by anything else. */
  static List<Plan> of(Lease lease) {
    String json = LeaseLock.annotations(lease).get(ANNOTATION);
    if (json == null || json.isBlank() || lease.getSpec() == null) {
      return List.of();
    }
    List<Plan> plans;
    try {
      plans = List.of(JSON.readValue(json, Plan[].class));
    } catch (JsonProcessingException | RuntimeException e) {
      return List.of();
    }
    if (plans.isEmpty()
        || plans.stream().anyMatch(p -> p == null || p.id() == null || p.owner() == null)
        || !plans.get(0).id().equals(lease.getSpec().getHolderIdentity())
        || !LockInfo.parse(LeaseLock.annotations(lease).get(LeaseLock.LOCK_INFO_ANNOTATION))
            .map(PlanHolds::isPlan)
            .orElse(false)
        || LeaseLock.annotations(lease).containsKey(LeaseLock.HELD_FOR_ANNOTATION)) {
      return List.of();
    }
    return plans;
  }

  /** The plan {@code id} holding {@code lease}'s lock, if one does. */
  static Optional<Plan> find(Lease lease, String id) {
    return of(lease).stream().filter(p -> p.id().equals(id)).findFirst();
  }

  /**
   * {@code lease}, free or held by plans only, held by plan {@code info} of {@code identity} too.
   */
  static Lease granted(Lease lease, LockInfo info, String identity) {
    List<Plan> plans = new ArrayList<>(of(lease));
    Lease held = plans.isEmpty() ? LeaseLock.heldBy(lease, info, identity) : lease;
    plans.add(Plan.of(info, identity));
    return withPlans(held, plans);
  }

  /**
   * {@code lease} without plan {@code id}: free when it was the last; when it was the first, the
   * next plan becomes the Lease's holder as Terraform sees it.
   */
  static Lease without(Lease lease, String id) {
    List<Plan> plans = new ArrayList<>(of(lease));
    boolean first = !plans.isEmpty() && plans.get(0).id().equals(id);
    plans.removeIf(p -> p.id().equals(id));
    if (plans.isEmpty()) {
      return LeaseLock.released(lease);
    }
    Lease next = lease;
    if (first) {
      Plan now = plans.get(0);
      next =
          new LeaseBuilder(
                  LeaseLock.withAnnotation(
                      LeaseLock.withAnnotation(
                          LeaseLock.withAnnotation(
                              lease,
                              LeaseLock.LOCK_INFO_ANNOTATION,
                              now.asHolder().info().orElseThrow().toJson()),
                          LeaseLock.OWNER_ANNOTATION,
                          null),
                      LeaseLock.OWNER_OF_ANNOTATION,
                      null))
              .editSpec()
              .withHolderIdentity(now.id())
              .endSpec()
              .build();
    }
    return withPlans(next, plans);
  }

  private static Lease withPlans(Lease lease, List<Plan> plans) {
    try {
      return LeaseLock.withAnnotation(lease, ANNOTATION, JSON.writeValueAsString(plans));
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }
}
