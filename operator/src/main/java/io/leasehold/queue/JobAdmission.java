package io.leasehold.queue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.leasehold.api.TerraformState;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.operator.EventRecorder;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.state.StateNames;
import java.time.Clock;
import java.time.Duration;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.Collection;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Admits a state's runner Jobs one at a time: takes the Lease for the head of the queue, and only
 * then unsuspends it; renews the Lease while it runs; hands the Lease to the next Job (or releases
 * it) the moment the running Job completes, fails or disappears. Never touches a lock held by
 * anyone else.
 *
 * <p>Every Lease change is conditional on the version read, so two operator instances, or an
 * operator and stock Terraform, can never both believe they took the lock.
 */
public final class JobAdmission {

  /** Written as the holder's Operation in Terraform's LockInfo. */
  public static final String OPERATION = "leasehold-run";

  private static final ObjectMapper MAPPER = new ObjectMapper();

  /** What the queue looks like after this pass, and when to look again. */
  public record Outcome(Lease lease, RunQueue queue, Optional<Job> holder, Duration recheckAfter) {}

  private final KubernetesClient client;
  private final EventRecorder events;
  private final Clock clock;
  private final WriteListener written;

  /** UIDs of waiting Jobs already told their position, so each hears it once. */
  private final Set<String> announced = ConcurrentHashMap.newKeySet();

  /** Told after each write, so informer caches can show it before its watch event arrives. */
  public interface WriteListener {
    void leaseWritten(TerraformState state, Lease written, Lease before);

    void jobWritten(TerraformState state, Job written, Job before);
  }

  private final LeaseholdMetrics metrics;

  public JobAdmission(
      KubernetesClient client,
      EventRecorder events,
      Clock clock,
      WriteListener written,
      LeaseholdMetrics metrics) {
    this.client = client;
    this.events = events;
    this.clock = clock;
    this.written = written;
    this.metrics = metrics;
  }

  public Outcome run(TerraformState state, StateNames names, Lease lease, Collection<Job> jobs) {
    RunQueue queue = RunQueue.of(names.name(), jobs);
    int duration = state.getSpec().getLock().getLeaseDurationSeconds();
    Duration idle = Duration.ZERO;
    Optional<String> vouched = LeaseLock.vouchedHolder(lease);
    Optional<String> heldUid = vouched.flatMap(RunnerJobs::uidOf);

    if (heldUid.isPresent()) {
      Job holder = find(jobs, heldUid.get());
      boolean active =
          holder != null
              && !RunnerJobs.finished(holder)
              && holder.getMetadata().getDeletionTimestamp() == null;
      if (active) {
        if (!RunnerJobs.admitted(holder)) {
          // The Lease was taken for it but the operator stopped before unsuspending it.
          unsuspend(state, holder, lease);
        }
        lease = renewIfDue(state, names, lease, duration);
        announce(state, queue, lease);
        return new Outcome(lease, queue, Optional.of(holder), untilRenewal(lease, duration));
      }
      String ending = RunnerJobs.ending(holder);
      String finishedName =
          holder != null ? holder.getMetadata().getName() : jobName(vouched.get());
      Optional<Job> next = queue.head();
      boolean othersRunning =
          queue.running().stream().anyMatch(j -> !j.getMetadata().getUid().equals(heldUid.get()));
      recordHold(lease);
      if (next.isPresent() && !othersRunning) {
        Job nextJob = next.get();
        Lease before = lease;
        lease = new LeaseLock(client, names).replace(heldFor(names, lease, nextJob, duration));
        written.leaseWritten(state, lease, before);
        unsuspend(state, nextJob, lease);
        // Events go out after the admission, so their writes do not delay it.
        if (holder != null) {
          events.normal(
              holder,
              "LockReleased",
              "Job "
                  + ending
                  + "; the lock on "
                  + names.name()
                  + " passed to Job "
                  + name(nextJob));
        }
        endedAt(holder).ifPresent(t -> metrics.handoff(Duration.between(t, clock.instant())));
        RunQueue after = RunQueue.of(names.name(), replaceJob(jobs, nextJob));
        announce(state, after, lease);
        return new Outcome(lease, after, Optional.of(nextJob), untilRenewal(lease, duration));
      }
      Lease before = lease;
      lease = new LeaseLock(client, names).replace(LeaseLock.released(lease));
      written.leaseWritten(state, lease, before);
      if (holder != null) {
        events.normal(
            holder, "LockReleased", "Job " + ending + "; the lock on " + names.name() + " is free");
      }
      announce(state, queue, lease);
      return new Outcome(lease, queue, Optional.empty(), idle);
    }

    if (LeaseLock.Holder.of(lease).isPresent()) {
      // Held by someone leasehold does not admit for (stock Terraform, an HTTP client):
      // the queue waits until they release it.
      announce(state, queue, lease);
      return new Outcome(lease, queue, Optional.empty(), idle);
    }
    if (!queue.running().isEmpty()) {
      // A Job admitted earlier still runs although its lock is gone (broken or expired while
      // the operator was away): admitting another would run two at once.
      Job stray = queue.running().get(0);
      if (announced.add("stray/" + stray.getMetadata().getUid())) {
        events.warning(
            stray,
            "RunningWithoutLock",
            "Job is running but no longer holds the lock on "
                + names.name()
                + "; no other Job is admitted until it ends");
      }
      return new Outcome(lease, queue, Optional.empty(), idle);
    }
    Optional<Job> head = queue.head();
    if (head.isEmpty()) {
      return new Outcome(lease, queue, Optional.empty(), idle);
    }
    Job job = head.get();
    Lease before = lease;
    lease = new LeaseLock(client, names).replace(heldFor(names, lease, job, duration));
    written.leaseWritten(state, lease, before);
    unsuspend(state, job, lease);
    RunQueue after = RunQueue.of(names.name(), replaceJob(jobs, job));
    announce(state, after, lease);
    return new Outcome(lease, after, Optional.of(job), untilRenewal(lease, duration));
  }

  private void recordHold(Lease lease) {
    ZonedDateTime acquired = lease.getSpec().getAcquireTime();
    if (acquired != null) {
      metrics.lockHeld(Duration.between(acquired.toInstant(), clock.instant()), "job");
    }
  }

  /** When a finished Job ended, as the Job controller recorded it. */
  private static Optional<java.time.Instant> endedAt(Job job) {
    if (job == null || job.getStatus() == null || job.getStatus().getConditions() == null) {
      return Optional.empty();
    }
    return job.getStatus().getConditions().stream()
        .filter(
            c ->
                ("Complete".equals(c.getType()) || "Failed".equals(c.getType()))
                    && "True".equals(c.getStatus()))
        .map(c -> c.getLastTransitionTime())
        .filter(Objects::nonNull)
        .map(t -> java.time.Instant.parse(t))
        .findFirst();
  }

  private Lease heldFor(StateNames names, Lease lease, Job job, int duration) {
    ZonedDateTime now = ZonedDateTime.now(clock);
    LockInfo info =
        new LockInfo(
            RunnerJobs.holderId(job),
            OPERATION,
            "runner Job "
                + names.namespace()
                + "/"
                + name(job)
                + " admitted by leasehold; the lock is renewed while it runs",
            "job/" + name(job),
            "leasehold",
            now.format(DateTimeFormatter.ISO_INSTANT),
            names.secretName());
    return LeaseLock.heldFor(lease, info, duration, now);
  }

  private Lease renewIfDue(TerraformState state, StateNames names, Lease lease, int duration) {
    ZonedDateTime now = ZonedDateTime.now(clock);
    ZonedDateTime renewed = lease.getSpec().getRenewTime();
    boolean due =
        renewed == null
            || !Objects.equals(lease.getSpec().getLeaseDurationSeconds(), duration)
            || !renewed.plus(renewInterval(duration)).isAfter(now);
    if (!due) {
      return lease;
    }
    Lease before = lease;
    Lease after = new LeaseLock(client, names).replace(LeaseLock.renewed(lease, duration, now));
    written.leaseWritten(state, after, before);
    return after;
  }

  /** Renew at a third of the duration: two renewals can fail before the lease lapses. */
  static Duration renewInterval(int durationSeconds) {
    return Duration.ofMillis(Math.max(1000, durationSeconds * 1000L / 3));
  }

  private Duration untilRenewal(Lease lease, int duration) {
    ZonedDateTime renewed = lease.getSpec().getRenewTime();
    if (renewed == null) {
      return Duration.ofSeconds(1);
    }
    Duration left =
        Duration.between(ZonedDateTime.now(clock), renewed.plus(renewInterval(duration)));
    return left.isNegative() || left.isZero() ? Duration.ofMillis(100) : left;
  }

  private void unsuspend(TerraformState state, Job job, Lease lease) {
    String pointer = "/metadata/annotations";
    ArrayNode patch = MAPPER.createArrayNode();
    // Only this Job: a Job re-created under the same name has another UID and is not admitted.
    patch.addObject().put("op", "test").put("path", "/metadata/uid").put("value", uid(job));
    String now = ZonedDateTime.now(clock).format(DateTimeFormatter.ISO_INSTANT);
    if (job.getMetadata().getAnnotations() == null) {
      patch
          .addObject()
          .put("op", "add")
          .put("path", pointer)
          .set("value", MAPPER.valueToTree(Map.of(RunnerJobs.ADMITTED_ANNOTATION, now)));
    } else {
      patch
          .addObject()
          .put("op", "add")
          .put("path", pointer + "/" + RunnerJobs.ADMITTED_ANNOTATION.replace("/", "~1"))
          .put("value", now);
    }
    patch.addObject().put("op", "add").put("path", "/spec/suspend").put("value", false);
    try {
      Job admitted =
          client
              .batch()
              .v1()
              .jobs()
              .inNamespace(job.getMetadata().getNamespace())
              .resource(job)
              .patch(PatchContext.of(PatchType.JSON), patch.toString());
      written.jobWritten(state, admitted, job);
    } catch (KubernetesClientException e) {
      if (e.getCode() == 404) {
        // Deleted in between: the next pass finds it gone and passes the lock on.
        return;
      }
      throw e;
    }
    announced.remove(uid(job));
    events.normal(
        job,
        "Admitted",
        "lock "
            + lease.getSpec().getHolderIdentity()
            + " on "
            + state.getMetadata().getName()
            + " taken for this Job; it is unsuspended and runs now");
  }

  /** Tells each waiting Job, once, where it stands and behind whom. */
  private void announce(TerraformState state, RunQueue queue, Lease lease) {
    String holder = LeaseLock.Holder.of(lease).map(LeaseLock.Holder::summary).orElse(null);
    for (int i = 0; i < queue.waiting().size(); i++) {
      Job job = queue.waiting().get(i);
      if (!announced.add(uid(job))) {
        continue;
      }
      String behind =
          i > 0
              ? "behind Job " + name(queue.waiting().get(i - 1))
              : holder != null ? "behind the lock holder " + holder : "at the head";
      events.normal(
          job,
          "Queued",
          "waiting for the lock on "
              + state.getMetadata().getName()
              + " at position "
              + (i + 1)
              + ", "
              + behind);
    }
  }

  /** Forgets a Job that is gone, so memory does not grow with Jobs that come and go. */
  public void forget(String uid) {
    announced.remove(uid);
    announced.remove("stray/" + uid);
  }

  private static Collection<Job> replaceJob(Collection<Job> jobs, Job admitted) {
    return jobs.stream()
        .map(
            j -> {
              if (!uid(j).equals(uid(admitted))) {
                return j;
              }
              Job copy =
                  new io.fabric8.kubernetes.api.model.batch.v1.JobBuilder(j)
                      .editMetadata()
                      .addToAnnotations(RunnerJobs.ADMITTED_ANNOTATION, "now")
                      .endMetadata()
                      .editSpec()
                      .withSuspend(false)
                      .endSpec()
                      .build();
              return copy;
            })
        .toList();
  }

  private static Job find(Collection<Job> jobs, String uid) {
    return jobs.stream().filter(j -> uid.equals(uid(j))).findFirst().orElse(null);
  }

  private static String jobName(String holderId) {
    String rest = holderId.substring(RunnerJobs.HOLDER_PREFIX.length());
    int slash = rest.lastIndexOf('/');
    return slash < 0 ? rest : rest.substring(0, slash);
  }

  private static String uid(Job job) {
    return job.getMetadata().getUid();
  }

  private static String name(Job job) {
    return job.getMetadata().getName();
  }
}
