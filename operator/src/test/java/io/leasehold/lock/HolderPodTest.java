package io.leasehold.lock;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.api.model.coordination.v1.LeaseBuilder;
import io.leasehold.state.StateNames;
import java.time.Instant;
import java.util.Optional;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/** Which pod a lock records as its taker, and when that record counts. */
class HolderPodTest {

  private static final StateNames NAMES = new StateNames("infra", "network", "default");
  private static final HolderPod POD = new HolderPod("ci", "runner-7f9c", "0f6c-uid");

  private static LockInfo info(String id) {
    return new LockInfo(id, "OperationTypeApply", "", "ci@runner", "1.11.4", "", "");
  }

  private static Lease heldByPod(String id) {
    return LeaseLock.withHolderPod(
        LeaseLock.heldBy(LeaseLock.unlocked(NAMES), info(id), "system:serviceaccount:ci:runner"),
        id,
        Optional.of(POD));
  }

  @Test
  @DisplayName("A bound token of a ServiceAccount names a pod of the ServiceAccount's namespace")
  void fromABoundToken() {
    assertThat(HolderPod.of("system:serviceaccount:ci:runner", "runner-7f9c", "0f6c-uid"))
        .contains(POD);
    // Not a ServiceAccount, no pod, no UID, or a name that is none: no pod.
    assertThat(HolderPod.of("alice", "runner-7f9c", "0f6c-uid")).isEmpty();
    assertThat(HolderPod.of("system:serviceaccount:ci:runner", null, "0f6c-uid")).isEmpty();
    assertThat(HolderPod.of("system:serviceaccount:ci:runner", "runner-7f9c", null)).isEmpty();
    assertThat(HolderPod.of("system:serviceaccount:ci:runner", "a/b", "0f6c-uid")).isEmpty();
    assertThat(HolderPod.of("system:serviceaccount:ci:runner", "x".repeat(254), "u")).isEmpty();
  }

  @Test
  @DisplayName(
      "The pod counts only for the lock it took: released, taken by another, or rewritten by a"
          + " client that left the annotation behind, the lock has no pod")
  void boundToItsLock() {
    Lease held = heldByPod("apply-1");
    assertThat(Holder.of(held, Instant.now()).orElseThrow().pod()).contains(POD);

    assertThat(LeaseLock.annotations(LeaseLock.released(held)))
        .doesNotContainKey(LeaseLock.HOLDER_POD_ANNOTATION);
    Lease next = LeaseLock.heldBy(held, info("apply-2"), "alice");
    assertThat(Holder.of(next, Instant.now()).orElseThrow().pod()).isEmpty();
    assertThat(LeaseLock.annotations(next)).doesNotContainKey(LeaseLock.HOLDER_POD_ANNOTATION);

    // Stock Terraform's kubernetes backend rewrites the holder and keeps other annotations.
    Lease rewritten =
        new LeaseBuilder(held).editSpec().withHolderIdentity("stock-terraform").endSpec().build();
    assertThat(Holder.of(rewritten, Instant.now()).orElseThrow().pod()).isEmpty();

    // A runner Job's lock never has a pod.
    Lease job = LeaseLock.heldFor(held, info("job/run/uid"), 300, Instant.now());
    assertThat(Holder.of(job, Instant.now()).orElseThrow().pod()).isEmpty();

    // Edited by hand into something else: no pod.
    Lease edited = LeaseLock.withAnnotation(held, LeaseLock.HOLDER_POD_ANNOTATION, "ci/pod");
    assertThat(Holder.of(edited, Instant.now()).orElseThrow().pod()).isEmpty();
  }

  @Test
  @DisplayName("The holder's reserve on the Lease has room for the largest pod record")
  void fitsTheReserve() {
    HolderPod largest = new HolderPod("n".repeat(63), "p".repeat(253), "u".repeat(64));
    String id = "i".repeat(LockInfo.MAX_ID_STORED);
    // The key counts in the reserve's room for keys.
    assertThat(LeaseSize.utf8(largest.toJson(id)))
        .isLessThanOrEqualTo(HolderPod.MAX_STORED + LockInfo.MAX_ID_STORED);
    assertThat(LeaseSize.HOLDER_KEYS).contains(LeaseLock.HOLDER_POD_ANNOTATION);
  }
}
