package io.leasehold.lock;

import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.api.model.coordination.v1.LeaseBuilder;
import io.leasehold.state.StateNames;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.util.HashMap;
import java.util.Map;
import java.util.Optional;

/**
 * The shapes of a state's lock Lease, in Terraform's format: held means {@code spec.holderIdentity}
 * is set, and {@value #LOCK_INFO_ANNOTATION} carries Terraform's LockInfo so that stock Terraform
 * waits and prints who holds it. Pure functions from one Lease to the next; {@link LockService}
 * writes them, each conditional on the version read.
 */
public final class LeaseLock {

  public static final String LOCK_INFO_ANNOTATION = "app.terraform.io/lock-info";

  /** On a Lease held for a runner Job: the LockInfo of the Job's own terraform, nested in it. */
  public static final String CLIENT_LOCK_ANNOTATION = "leasehold.io/client-lock";

  /** The identity that took the nested lock. */
  public static final String CLIENT_LOCK_OWNER_ANNOTATION = "leasehold.io/client-lock-owner";

  /**
   * The pod that took the lock through leasehold's backend ({@link HolderPod}), bound to its lock
   * ID: set with an exclusive client lock taken with a bound ServiceAccount token, cleared with the
   * lock.
   */
  public static final String HOLDER_POD_ANNOTATION = "leasehold.io/holder-pod";

  /** Set by leasehold on Leases it holds and renews on a holder's behalf. */
  public static final String HELD_FOR_ANNOTATION = "leasehold.io/held-for";

  /** The identity that took the lock through leasehold's backend. */
  public static final String OWNER_ANNOTATION = "leasehold.io/owner";

  /**
   * The lock ID {@value #OWNER_ANNOTATION} belongs to: a client that clears only the holder and its
   * LockInfo (stock Terraform's force-unlock) leaves the owner behind, and it must not pass to the
   * next lock taken on the Lease.
   */
  public static final String OWNER_OF_ANNOTATION = "leasehold.io/owner-of";

  /**
   * On a lock taken over from a holder whose lock expired: that holder's lock ID, so that whoever
   * reports the change tells a takeover from a release. Cleared with the lock.
   */
  public static final String TOOK_OVER_FROM_ANNOTATION = "leasehold.io/took-over-from";

  /**
   * Present ("true") while the state's queue is held (its TerraformState's spec.queue.hold, copied
   * here by the leader so that every replica sees it with the lock): nobody new is granted the lock
   * but the state's deletion.
   */
  public static final String HOLD_ANNOTATION = "leasehold.io/hold";

  /** The state's line of waiting Jobs and clients ({@link Line}). */
  public static final String LINE_ANNOTATION = "leasehold.io/line";

  /**
   * The runner Jobs leasehold admitted for the state that have not ended yet, whoever holds the
   * lock now: a Job whose lock expired or was broken still runs, and no other Job may start until
   * it ends, whatever becomes of its labels.
   */
  public static final String RUNNING_ANNOTATION = "leasehold.io/running";

  /** A runner Job admitted for the state, by UID and name. */
  public record RunningJob(
      @com.fasterxml.jackson.annotation.JsonProperty("uid") String uid,
      @com.fasterxml.jackson.annotation.JsonProperty("name") String name) {}

  private static final com.fasterxml.jackson.databind.ObjectMapper JSON =
      new com.fasterxml.jackson.databind.ObjectMapper();

  /** The Jobs admitted for the state that have not been seen to end. */
  public static java.util.List<RunningJob> running(Lease lease) {
    String json = annotations(lease).get(RUNNING_ANNOTATION);
    if (json == null || json.isBlank()) {
      return java.util.List.of();
    }
    try {
      return java.util.List.of(JSON.readValue(json, RunningJob[].class));
    } catch (com.fasterxml.jackson.core.JsonProcessingException | RuntimeException e) {
      return java.util.List.of();
    }
  }

  /** {@code lease} with the running Jobs replaced. */
  public static Lease withRunning(Lease lease, java.util.List<RunningJob> running) {
    try {
      return withAnnotation(
          lease, RUNNING_ANNOTATION, running.isEmpty() ? null : JSON.writeValueAsString(running));
    } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }

  /** Prefix of the lock ID leasehold uses for a runner Job: {@code job/<name>/<uid>}. */
  public static final String JOB_PREFIX = "job/";

  private LeaseLock() {}

  /** The lock ID for a runner Job, so a Job re-created under the same name never inherits it. */
  public static String jobLockId(String jobName, String jobUid) {
    return JOB_PREFIX + jobName + "/" + jobUid;
  }

  /** The UID named by a Job lock ID, if it is one. */
  public static Optional<String> jobUid(String lockId) {
    if (lockId == null || !lockId.startsWith(JOB_PREFIX)) {
      return Optional.empty();
    }
    int slash = lockId.lastIndexOf('/');
    return slash > JOB_PREFIX.length() && slash < lockId.length() - 1
        ? Optional.of(lockId.substring(slash + 1))
        : Optional.empty();
  }

  /** The Job name named by a Job lock ID. */
  public static String jobName(String lockId) {
    String rest = lockId.substring(JOB_PREFIX.length());
    int slash = rest.lastIndexOf('/');
    return slash < 0 ? rest : rest.substring(0, slash);
  }

  /** An unlocked Lease as Terraform would create it for {@code names}. */
  public static Lease unlocked(StateNames names) {
    Map<String, String> labels = new HashMap<>(names.terraformLabels());
    labels.put(StateNames.LABEL_STATE, names.name());
    return new LeaseBuilder()
        .withMetadata(
            new ObjectMetaBuilder()
                .withName(names.leaseName())
                .withNamespace(names.namespace())
                .withLabels(labels)
                .build())
        .withNewSpec()
        .endSpec()
        .build();
  }

  /**
   * A Lease deleted outside leasehold, to be created again as it was: its holder, LockInfo, line
   * and running Jobs, with the labels of {@code names}. A lock leasehold renews (a runner Job's)
   * counts as renewed now, so it does not expire before the next renewal.
   */
  public static Lease recreated(Lease last, StateNames names, Instant now) {
    Lease fresh = unlocked(names);
    Map<String, String> labels = new HashMap<>(fresh.getMetadata().getLabels());
    if (last.getMetadata().getLabels() != null) {
      labels.putAll(last.getMetadata().getLabels());
    }
    fresh.getMetadata().setLabels(labels);
    fresh.getMetadata().setAnnotations(new HashMap<>(annotations(last)));
    if (last.getSpec() != null) {
      fresh.setSpec(new LeaseBuilder(last).build().getSpec());
    }
    Optional<Holder> holder = Holder.of(fresh, now);
    if (holder.isPresent() && holder.get().vouched()) {
      fresh.getSpec().setRenewTime(now.atZone(ZoneOffset.UTC));
    }
    return fresh;
  }

  /**
   * Held for runner Job {@code jobLock} (admitted, still running) on a Lease that is gone: created
   * anew, the lock never free while the Job runs.
   */
  public static Lease heldForRunning(
      StateNames names,
      LockInfo jobLock,
      int durationSeconds,
      Instant now,
      java.util.List<RunningJob> running) {
    return withRunning(heldFor(unlocked(names), jobLock, durationSeconds, now), running);
  }

  /** Whether a Lease that carries a duration has gone unrenewed for longer than it. */
  public static boolean expired(Lease lease, Instant now) {
    var spec = lease.getSpec();
    if (spec == null || spec.getLeaseDurationSeconds() == null) {
      return false;
    }
    ZonedDateTime renewed =
        spec.getRenewTime() != null ? spec.getRenewTime() : spec.getAcquireTime();
    return renewed == null
        || renewed.toInstant().plusSeconds(spec.getLeaseDurationSeconds()).isBefore(now);
  }

  /** Whether the queue of {@code lease}'s state is held. */
  public static boolean held(Lease lease) {
    return "true".equals(annotations(lease).get(HOLD_ANNOTATION));
  }

  /** The line of {@code lease}. */
  public static Line line(Lease lease) {
    return Line.parse(annotations(lease).get(LINE_ANNOTATION));
  }

  /** {@code lease} with its line replaced. */
  public static Lease withLine(Lease lease, Line line) {
    return withAnnotation(lease, LINE_ANNOTATION, line.toJson());
  }

  /**
   * Held the way Terraform locks: {@code holderIdentity} set to the lock ID and {@value
   * #LOCK_INFO_ANNOTATION} carrying the LockInfo; plus the identity that took it. Whatever the
   * previous holder left (duration, nested lock) is cleared first.
   */
  public static Lease heldBy(Lease lease, LockInfo info, String owner) {
    Lease held =
        new LeaseBuilder(
                withAnnotation(
                    withAnnotation(
                        withAnnotation(released(lease), LOCK_INFO_ANNOTATION, info.toJson()),
                        OWNER_ANNOTATION,
                        owner),
                    OWNER_OF_ANNOTATION,
                    info.id()))
            .editOrNewSpec()
            .withHolderIdentity(info.id())
            .endSpec()
            .build();
    return held;
  }

  /**
   * Held by leasehold for a holder it vouches for (a runner Job): Terraform's holder and lock-info,
   * plus a duration, acquire and renew times, one more transition, and {@value
   * #HELD_FOR_ANNOTATION} naming the holder.
   */
  public static Lease heldFor(Lease lease, LockInfo info, int durationSeconds, Instant now) {
    Lease cleared = released(lease);
    Map<String, String> annotations = new HashMap<>(annotations(cleared));
    annotations.put(LOCK_INFO_ANNOTATION, info.toJson());
    annotations.put(HELD_FOR_ANNOTATION, info.id());
    Integer transitions = lease.getSpec() == null ? null : lease.getSpec().getLeaseTransitions();
    ZonedDateTime at = now.atZone(ZoneOffset.UTC);
    return new LeaseBuilder(cleared)
        .editMetadata()
        .withAnnotations(annotations)
        .endMetadata()
        .editOrNewSpec()
        .withHolderIdentity(info.id())
        .withLeaseDurationSeconds(durationSeconds)
        .withAcquireTime(at)
        .withRenewTime(at)
        .withLeaseTransitions(transitions == null ? 1 : transitions + 1)
        .endSpec()
        .build();
  }

  /** The Lease with its renew time moved to {@code now} (and its duration to the spec's). */
  public static Lease renewed(Lease lease, int durationSeconds, Instant now) {
    return new LeaseBuilder(lease)
        .editSpec()
        .withRenewTime(now.atZone(ZoneOffset.UTC))
        .withLeaseDurationSeconds(durationSeconds)
        .endSpec()
        .build();
  }

  /**
   * {@code held}, just granted to lock {@code lockId}, recording {@code pod} as the pod that took
   * it (or nothing, when no pod did).
   */
  static Lease withHolderPod(Lease held, String lockId, Optional<HolderPod> pod) {
    return withAnnotation(held, HOLDER_POD_ANNOTATION, pod.map(p -> p.toJson(lockId)).orElse(null));
  }

  /** {@code held}, a lock just taken over from {@code previous}, whose lock expired, saying so. */
  public static Lease tookOver(Lease held, Holder previous) {
    return withAnnotation(held, TOOK_OVER_FROM_ANNOTATION, previous.id());
  }

  /** {@code held}, taken over from {@code previous} when there was one, saying so. */
  static Lease tookOver(Lease held, Optional<Holder> previous) {
    return previous.isPresent() ? tookOver(held, previous.get()) : held;
  }

  /** The lock ID the lock of {@code lease} was taken over from, when it was taken over. */
  public static Optional<String> tookOverFrom(Lease lease) {
    return Optional.ofNullable(annotations(lease).get(TOOK_OVER_FROM_ANNOTATION))
        .filter(id -> !id.isEmpty());
  }

  /**
   * With a nested lock (a runner Job's own terraform) set, or cleared when {@code info} is null.
   */
  public static Lease withNested(Lease lease, LockInfo info, String owner) {
    return withAnnotation(
        withAnnotation(lease, CLIENT_LOCK_ANNOTATION, info == null ? null : info.toJson()),
        CLIENT_LOCK_OWNER_ANNOTATION,
        info == null ? null : owner);
  }

  /**
   * Unlocked the way Terraform unlocks: holder and lock-info cleared, and leasehold's own holding
   * fields and any nested lock with them. The line stays.
   */
  public static Lease released(Lease lease) {
    Lease copy =
        new LeaseBuilder(lease)
            .editOrNewSpec()
            .withHolderIdentity(null)
            .withLeaseDurationSeconds(null)
            .withAcquireTime(null)
            .withRenewTime(null)
            .endSpec()
            .build();
    Map<String, String> kept = new HashMap<>(annotations(copy));
    kept.remove(LOCK_INFO_ANNOTATION);
    kept.remove(HELD_FOR_ANNOTATION);
    kept.remove(OWNER_ANNOTATION);
    kept.remove(OWNER_OF_ANNOTATION);
    kept.remove(CLIENT_LOCK_ANNOTATION);
    kept.remove(CLIENT_LOCK_OWNER_ANNOTATION);
    kept.remove(TOOK_OVER_FROM_ANNOTATION);
    kept.remove(HOLDER_POD_ANNOTATION);
    kept.remove(PlanHolds.ANNOTATION);
    copy.getMetadata().setAnnotations(kept);
    return copy;
  }

  /** A copy of {@code lease} with annotation {@code key} set to {@code value}, or removed. */
  public static Lease withAnnotation(Lease lease, String key, String value) {
    Map<String, String> annotations = new HashMap<>(annotations(lease));
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
   * The holder's LockInfo as Terraform prints it on a refused LOCK: the Lease's own when it is
   * there, otherwise one built from the holder ID.
   */
  public static String holderJson(Lease lease) {
    String json = annotations(lease).get(LOCK_INFO_ANNOTATION);
    if (LockInfo.parse(json).isPresent()) {
      return json;
    }
    return new LockInfo(
            lease.getSpec() == null ? Holder.UNREADABLE_ID : lease.getSpec().getHolderIdentity(),
            "",
            "held without Terraform lock info",
            "",
            "",
            "",
            "")
        .toJson();
  }

  static Map<String, String> annotations(Lease lease) {
    Map<String, String> a = lease == null ? null : lease.getMetadata().getAnnotations();
    return a == null ? Map.of() : a;
  }
}
