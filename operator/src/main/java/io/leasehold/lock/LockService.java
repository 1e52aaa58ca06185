package io.leasehold.lock;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.leasehold.kube.ApiRefusals;
import io.leasehold.state.StateNames;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.function.UnaryOperator;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The one place where a state's lock changes hands. Every transition (a client's LOCK and UNLOCK, a
 * runner Job's pod locking under the Job's lock, admitting a Job, renewing its lock, handing it on,
 * taking over an expired lock, force-unlocking, the deletion lock) is decided here and written as
 * one update of the Lease conditional on the version it was decided on; nothing else writes a lock
 * Lease.
 *
 * <p>The rules:
 *
 * <ul>
 *   <li>One line per state, on the Lease ({@link Line}): runner Jobs and {@code ?wait=} clients in
 *       order of arrival. A free lock goes to the first in line that may take it now: a Job (the
 *       leader admits it) or a client whose request is still connected. A client whose request
 *       ended keeps its place for a grace period, so Terraform's retry with the same lock ID is
 *       served before later arrivals, but the lock is never granted to a client that is not
 *       connected.
 *   <li>A lock belongs to the identity that took it: using its ID from another identity is refused
 *       as {@link Refusal#NOT_OWNER}, which only a force-unlock may override. A runner Job's lock
 *       belongs to the Job's pods.
 *   <li>A runner Job's lock is taken over only once its Lease went unrenewed for its duration and
 *       the Job has ended (read from the API: {@link #mayTakeOver}), so a leader that stalls or
 *       stops renewing never lets a second run start beside the first. Locks of clients and of
 *       stock Terraform never expire.
 * </ul>
 *
 * <p>Answers are in the lock's own words (granted, held by whom, refused and why); the HTTP backend
 * turns them into status codes and the reconciler into status and Events. All methods block on the
 * Kubernetes API.
 */
public final class LockService {

  /**
   * @param ticketGrace how long a client whose request ended keeps its place in line
   */
  public record Settings(Duration ticketGrace) {
    public static final Settings DEFAULTS = new Settings(Duration.ofSeconds(30));
  }

  /** Where Leases are read from before asking the API: the shared informer cache. */
  public interface LeaseSource {
    LeaseSource NONE = (namespace, name) -> Optional.empty();

    Optional<Lease> cached(String namespace, String name);

    /** Told of each Lease written, so the cache can show it before its watch event arrives. */
    default void written(Lease before, Lease after) {}

    /** Tells {@code listener} of every change to a lock Lease the watch reports. */
    default void onChange(java.util.function.Consumer<Lease> listener) {}

    /**
     * Why state {@code namespace/name} takes no new locks (its TerraformState is being deleted), or
     * empty when it does.
     */
    default Optional<String> closed(String namespace, String name) {
      return Optional.empty();
    }

    /** Lease {@code name} as it was when the watch reported it deleted, if it did lately. */
    default Optional<Lease> deleted(String namespace, String name) {
      return Optional.empty();
    }

    /** Forgets a deleted Lease once it is recreated (or exists again). */
    default void forgetDeleted(String namespace, String name) {}
  }

  /** A request waiting on this replica whose connection is open. */
  public record Waiting(LockInfo info, Caller caller) {}

  /** Why a request was refused. */
  public enum Refusal {
    /** The lock ID belongs to another identity: only a force-unlock may use it. */
    NOT_OWNER,
    /** The line has no more places for clients. */
    LINE_FULL,
    /** The lock ID is not (or no longer) the holder's. */
    STALE_LOCK,
    /** Someone holds the lock and the request carries no lock ID. */
    LOCKED,
    /**
     * The state's TerraformState is being deleted: no new lock is granted and nothing is written
     * without the lock held since before.
     */
    DELETING,
    /**
     * The lock ID is held by a request of the same identity with a different LockInfo: not a retry
     * of the request that took it, but another one reusing its ID.
     */
    ID_IN_USE,
    /** What the request would record does not fit in the lock Lease ({@link LeaseSize}). */
    TOO_LARGE
  }

  /** What a LOCK, UNLOCK or write check came to. */
  public sealed interface Answer permits Granted, NotNow, Refused, Released, NotHeld, Allowed {}

  /**
   * The lock is the requester's (now, or already).
   *
   * @param lease the Lease as written (to undo a grant whose answer could not be delivered); null
   *     when nothing was written
   * @param tookOver an expired lock was taken over
   */
  public record Granted(String lockId, Lease lease, boolean tookOver) implements Answer {}

  /**
   * Not now: someone holds the lock, or others stand before the requester in line.
   *
   * @param holder the holder, empty when the lock is free but others are first
   * @param holderJson the LockInfo to answer with
   * @param position the requester's 1-based place in line, 0 when it is not in line
   */
  public record NotNow(Optional<Holder> holder, String holderJson, int position)
      implements Answer {}

  /** Refused, with a message that says why and what to do. */
  public record Refused(Refusal refusal, String message, Optional<Holder> holder)
      implements Answer {}

  /**
   * Released. {@code previous} is who held it; {@code nested} is true when only a nested lock was.
   */
  public record Released(Holder previous, boolean nested) implements Answer {}

  /** UNLOCK or force-unlock of a lock that is not held (by that ID). */
  public record NotHeld(Optional<Holder> holder, String message) implements Answer {}

  /** A write may go ahead under the lock it carries. */
  public record Allowed() implements Answer {}

  /** The Lease kept changing under every attempt. */
  public static final class Busy extends RuntimeException {
    public Busy(StateNames names) {
      super(
          "the lock Lease "
              + names.namespace()
              + "/"
              + names.leaseName()
              + " keeps changing under every attempt; retry");
    }
  }

  /**
   * A transition on a Lease that others keep changing is attempted at least {@code ATTEMPTS} times
   * and for at least {@code CONTENDED_BUDGET}, backing off between attempts, before it gives up
   * with {@link Busy} (nothing written).
   */
  private static final int ATTEMPTS = 10;

  private static final Duration CONTENDED_BUDGET = Duration.ofSeconds(5);

  private static final long MAX_BACKOFF_MILLIS = 50;
  private static final Logger LOG = LoggerFactory.getLogger(LockService.class);

  private final KubernetesClient client;
  private final LeaseSource leases;
  private final Clock clock;
  private final String replica;
  private final ReplicaLiveness liveness;
  private final Settings settings;
  private final LockCore core;
  private final JobLiveness jobs;

  /**
   * Transitions on one Lease made by this process take turns (fairly, in the order they asked):
   * they would otherwise only conflict with each other and retry. Writers elsewhere (another
   * replica, stock Terraform) are still met by the conditional write. Striped, so memory stays
   * bounded however many states there are.
   */
  private final java.util.concurrent.locks.ReentrantLock[] turns =
      new java.util.concurrent.locks.ReentrantLock[256];

  public LockService(
      KubernetesClient client, LeaseSource leases, Clock clock, String replica, Settings settings) {
    this(client, leases, clock, ReplicaLiveness.alone(replica), settings, JobLiveness.of(client));
  }

  /**
   * @param jobs tells whether the runner Job a lapsed lock is held for still runs
   */
  public LockService(
      KubernetesClient client,
      LeaseSource leases,
      Clock clock,
      String replica,
      Settings settings,
      JobLiveness jobs) {
    this(client, leases, clock, ReplicaLiveness.alone(replica), settings, jobs);
  }

  /**
   * @param liveness which replicas are alive; places in line of the others are dropped
   */
  public LockService(
      KubernetesClient client,
      LeaseSource leases,
      Clock clock,
      ReplicaLiveness liveness,
      Settings settings) {
    this(client, leases, clock, liveness, settings, JobLiveness.of(client));
  }

  /**
   * @param liveness which replicas are alive; places in line of the others are dropped
   * @param jobs tells whether the runner Job a lapsed lock is held for still runs
   */
  public LockService(
      KubernetesClient client,
      LeaseSource leases,
      Clock clock,
      ReplicaLiveness liveness,
      Settings settings,
      JobLiveness jobs) {
    this.client = client;
    this.jobs = jobs;
    this.leases = leases;
    this.clock = clock;
    this.replica = liveness.self();
    this.liveness = liveness;
    this.settings = settings;
    this.core = new LockCore(new LockCore.Rules(settings.ticketGrace(), 1, Line.MAX_CLIENTS));
    for (int i = 0; i < turns.length; i++) {
      turns[i] = new java.util.concurrent.locks.ReentrantLock(true);
    }
  }

  public String replica() {
    return replica;
  }

  /** Tells {@code listener} of every change to a lock Lease (from the watch). */
  public void onLeaseChange(java.util.function.Consumer<Lease> listener) {
    leases.onChange(listener);
  }

  public Settings settings() {
    return settings;
  }

  public Instant now() {
    return clock.instant();
  }

  // ---------------------------------------------------------------- reading and writing the Lease

  /** The Lease as last seen (the cache), created unlocked when there is none. */
  public Lease current(StateNames names) {
    return read(names, false);
  }

  /** The Lease as the API server has it now, created unlocked when there is none. */
  public Lease fresh(StateNames names) {
    return read(names, true);
  }

  /** The Lease as the API server has it now, without creating it. */
  public Optional<Lease> peek(StateNames names) {
    return Optional.ofNullable(
        client.leases().inNamespace(names.namespace()).withName(names.leaseName()).get());
  }

  /** The Lease as cached, or as the API server has it; empty when there is none. Never creates. */
  public Optional<Lease> existing(StateNames names) {
    Optional<Lease> cached = leases.cached(names.namespace(), names.leaseName());
    return cached.isPresent() ? cached : peek(names);
  }

  /** Why the state takes no new locks: its TerraformState is being deleted. Empty when it does. */
  public Optional<String> closed(StateNames names) {
    return leases.closed(names.namespace(), names.name());
  }

  /**
   * The Lease to decide on. A missing Lease is created: unlocked, or as it was when it was deleted
   * outside leasehold (its lock, its line), so that a lock is never free under a running Job or a
   * client in the middle of an apply. For a state being deleted nothing is created here: the
   * decision works on an unlocked Lease not yet stored, and a write, if any, creates it.
   */
  private Lease read(StateNames names, boolean fresh) {
    Optional<Lease> cached = leases.cached(names.namespace(), names.leaseName());
    if (!fresh && cached.isPresent()) {
      return cached.get();
    }
    Optional<Lease> stored = peek(names);
    if (stored.isPresent()) {
      leases.forgetDeleted(names.namespace(), names.leaseName());
      return stored.get();
    }
    if (closed(names).isPresent()) {
      return LeaseLock.unlocked(names);
    }
    // Gone: as the watch last saw it, or as the cache still shows it when the watch has not told
    // of the deletion yet.
    Optional<Lease> lost = recreation(names, cached);
    try {
      Lease created =
          client
              .leases()
              .inNamespace(names.namespace())
              .resource(lost.orElseGet(() -> LeaseLock.unlocked(names)))
              .create();
      leases.written(null, created);
      leases.forgetDeleted(names.namespace(), names.leaseName());
      Optional<Holder> holder = Holder.of(created, clock.instant());
      if (lost.isPresent() && holder.isPresent()) {
        LOG.warn(
            "{}/{}: the lock Lease {} was deleted outside leasehold while lock {} ({}) held it;"
                + " it is recreated as it was, lock included (release a lock with force-unlock)",
            names.namespace(),
            names.name(),
            names.leaseName(),
            holder.get().id(),
            holder.get().summary());
      }
      return created;
    } catch (KubernetesClientException e) {
      if (e.getCode() == 409) {
        // Someone (stock Terraform taking the lock, say) created it first: theirs stands.
        return peek(names).orElseThrow(() -> e);
      }
      throw e;
    }
  }

  /**
   * The Lease as it was when the watch last saw it deleted, to be created again, unless it was
   * leasehold's own deletion lock (the state was deleted on purpose) or belongs to other names.
   */
  private Optional<Lease> recreation(StateNames names, Optional<Lease> cached) {
    Optional<Lease> last = leases.deleted(names.namespace(), names.leaseName()).or(() -> cached);
    if (last.isEmpty()) {
      return Optional.empty();
    }
    Map<String, String> labels = last.get().getMetadata().getLabels();
    Optional<Holder> holder = Holder.of(last.get(), clock.instant());
    if (holder.isPresent() && holder.get().id().startsWith(DELETION_PREFIX)
        || labels == null
        || !names.name().equals(labels.get(StateNames.LABEL_SUFFIX))
        || !names.workspace().equals(labels.get(StateNames.LABEL_WORKSPACE))) {
      leases.forgetDeleted(names.namespace(), names.leaseName());
      return Optional.empty();
    }
    return Optional.of(LeaseLock.recreated(last.get(), names, clock.instant()));
  }

  /**
   * Writes {@code changed} only if the Lease is still at the version it was derived from; a Lease
   * not stored yet (a state being deleted) is created, which fails if one appeared meanwhile.
   */
  private Lease write(Lease before, Lease changed) {
    if (before.getMetadata().getResourceVersion() == null) {
      Lease created =
          client
              .leases()
              .inNamespace(changed.getMetadata().getNamespace())
              .resource(changed)
              .create();
      leases.written(null, created);
      return created;
    }
    if (changed.getMetadata().getResourceVersion() == null) {
      throw new IllegalArgumentException("a Lease update must carry the resourceVersion it read");
    }
    Lease written =
        client
            .leases()
            .inNamespace(changed.getMetadata().getNamespace())
            .resource(changed)
            .update();
    leases.written(before, written);
    return written;
  }

  /** A decision made on one version of the Lease: what to write (if anything) and the answer. */
  private record Step<A>(Lease write, A answer) {
    static <A> Step<A> answer(A answer) {
      return new Step<>(null, answer);
    }
  }

  /**
   * Decides on the Lease as cached and writes the decision conditionally; when the Lease changed in
   * between, decides again on the version the API server has.
   */
  private <A> A transition(
      StateNames names, java.util.function.Function<Lease, Step<A>> decide, Lease written[]) {
    return transition(names, decide, written, false);
  }

  /**
   * As {@link #transition(StateNames, java.util.function.Function, Lease[])}, reading the Lease
   * from the API server from the start when {@code freshFirst}: for decisions whose "nothing to do"
   * must not rest on a cache that may not show this replica's own last write yet (an UNLOCK right
   * after its LOCK, undoing a grant just written).
   */
  private <A> A transition(
      StateNames names,
      java.util.function.Function<Lease, Step<A>> decide,
      Lease written[],
      boolean freshFirst) {
    java.util.concurrent.locks.ReentrantLock turn =
        turns[
            Math.floorMod((names.namespace() + "/" + names.leaseName()).hashCode(), turns.length)];
    turn.lock();
    try {
      return attempt(names, decide, written, freshFirst);
    } finally {
      turn.unlock();
    }
  }

  private <A> A attempt(
      StateNames names,
      java.util.function.Function<Lease, Step<A>> decide,
      Lease written[],
      boolean freshFirst) {
    boolean fresh = freshFirst;
    long deadline = System.nanoTime() + CONTENDED_BUDGET.toNanos();
    for (int attempt = 0; attempt < ATTEMPTS || System.nanoTime() < deadline; attempt++) {
      if (attempt >= 2) {
        // Others keep writing the Lease (waiters joining and leaving the line): step back a
        // random moment, growing, so that this decision gets its turn instead of losing every
        // race to the next writer.
        backOff(attempt);
      }
      Lease lease = read(names, fresh);
      Step<A> step = decide.apply(lease);
      if (step.write() == null) {
        return step.answer();
      }
      try {
        Lease stored = write(lease, step.write());
        if (written != null) {
          written[0] = stored;
        }
        return step.answer();
      } catch (KubernetesClientException e) {
        if (e.getCode() != 409) {
          throw e;
        }
        fresh = true;
      }
    }
    throw new Busy(names);
  }

  private static void backOff(int attempt) {
    long bound = Math.min(MAX_BACKOFF_MILLIS, 1L << Math.min(attempt, 6));
    try {
      Thread.sleep(1 + java.util.concurrent.ThreadLocalRandom.current().nextLong(bound));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new KubernetesClientException("interrupted while the lock Lease was contended", e);
    }
  }

  private <A> A transition(StateNames names, java.util.function.Function<Lease, Step<A>> decide) {
    return transition(names, decide, null);
  }

  private <A> A freshTransition(
      StateNames names, java.util.function.Function<Lease, Step<A>> decide) {
    return transition(names, decide, null, true);
  }

  // ------------------------------------------------------------------------------ taking over

  /**
   * Whether lock {@code h} (of a state in {@code namespace}) may be taken over now. A runner Job's
   * lock: only once its Lease went unrenewed for its duration (while the leader renews it, the
   * leader hands it on) and the Job has ended, read from the API whatever the renew time says:
   * gone, completed or failed, and none of its pods still running. Should that not be readable the
   * lock is not taken over. Any other lock leasehold vouches for: once it went unrenewed for its
   * duration. Locks of clients and of stock Terraform, and an unreadable Lease: never.
   */
  public boolean mayTakeOver(String namespace, Holder h) {
    if (!h.expired()) {
      return false;
    }
    Optional<String> jobUid = h.jobUid();
    if (jobUid.isEmpty()) {
      return true;
    }
    String job = LeaseLock.jobName(h.id());
    try {
      if (!jobs.mayRun(namespace, job, jobUid.get())) {
        return true;
      }
      LOG.debug(
          "{}: lock {} went unrenewed past its duration but runner Job {} still runs; it is not"
              + " taken over",
          namespace,
          h.id(),
          job);
      return false;
    } catch (RuntimeException e) {
      LOG.warn(
          "{}: lock {} went unrenewed past its duration but whether runner Job {} still runs cannot"
              + " be read ({}); it is not taken over",
          namespace,
          h.id(),
          job,
          e.getMessage());
      return false;
    }
  }

  // ------------------------------------------------------------------------------ client locks

  /**
   * A client's LOCK. Granted when the lock is free and nobody who may take it now stands before the
   * client in line (or the client already holds it); otherwise not now, and with {@code waits} the
   * client takes (or takes back) its place in line.
   *
   * @param local the requests waiting on this replica whose connections are open, by lock ID; the
   *     requester counts as one of them
   */
  public Answer lock(
      StateNames names, LockInfo info, Caller caller, boolean waits, Map<String, Waiting> local) {
    for (int round = 0; ; round++) {
      Lease[] written = new Lease[1];
      Answer answer =
          transition(
              names,
              lease -> decideLock(names, lease, info, caller, waits, local),
              written,
              !waits);
      if (answer == BACK_FIRST && round < ATTEMPTS) {
        continue;
      }
      if (answer instanceof Granted g && g.lease() == null && written[0] != null) {
        return new Granted(g.lockId(), written[0], g.tookOver());
      }
      return answer;
    }
  }

  /**
   * Written first when the lock is to go to a client whose place says it had left: the place is
   * taken back in one write and the lock granted in the next, so the Lease never shows a grant to a
   * client it last showed as gone.
   */
  private static final NotNow BACK_FIRST = new NotNow(Optional.empty(), "", -1);

  private static final Granted SERVE_BACK_FIRST = new Granted("", null, false);

  private Step<Answer> decideLock(
      StateNames names,
      Lease lease,
      LockInfo info,
      Caller caller,
      boolean waits,
      Map<String, Waiting> local) {
    Optional<String> tooLarge = LeaseSize.identityProblem(caller.identity()).or(info::problem);
    if (tooLarge.isPresent()) {
      return Step.answer(new Refused(Refusal.TOO_LARGE, tooLarge.get(), Optional.empty()));
    }
    Instant now = clock.instant();
    String owner = Caller.digest(caller.identity());
    Line line = LeaseLock.line(lease);
    Line pruned = kept(line, now);
    Optional<Ticket> mine = pruned.find(info.id());
    if (mine.isPresent() && (!mine.get().isClient() || !owner.equals(mine.get().owner()))) {
      return Step.answer(
          new Refused(
              Refusal.NOT_OWNER,
              "lock ID " + info.id() + " is in line for another identity; use a new lock ID",
              Optional.empty()));
    }
    Optional<Holder> holder = Holder.of(lease, now);
    if (holder.isPresent() && !mayTakeOver(names.namespace(), holder.get())) {
      Holder h = holder.get();
      if (h.id().equals(info.id())) {
        if (!ownedBy(h, caller)) {
          return Step.answer(notOwner(names, h, caller));
        }
        return Step.answer(retryOrConflict(h, h.info(), info));
      }
      Optional<String> jobUid = h.jobUid();
      if (jobUid.isPresent() && caller.isPodOfJob(names.namespace(), jobUid.get())) {
        // The runner Job's own terraform locks under the Job's lock (also while the state is
        // being deleted: the Job was admitted before, and runs to its end).
        Optional<Holder.Nested> nested = h.nested();
        if (nested.isEmpty()) {
          return new Step<>(
              LeaseLock.withNested(lease, info, caller.identity()),
              new Granted(info.id(), null, false));
        }
        if (nested.get().info().id().equals(info.id())
            && nested.get().owner().map(caller.identity()::equals).orElse(false)) {
          return Step.answer(retryOrConflict(h, Optional.of(nested.get().info()), info));
        }
        return Step.answer(new NotNow(holder, nested.get().info().toJson(), 0));
      }
      Optional<String> closed = closed(names);
      if (closed.isPresent()) {
        return Step.answer(new Refused(Refusal.DELETING, closed.get(), holder));
      }
      return joinOrWait(lease, line, pruned, info, caller, owner, waits, holder, now);
    }
    Optional<String> closed = closed(names);
    if (closed.isPresent()) {
      return Step.answer(new Refused(Refusal.DELETING, closed.get(), holder));
    }
    // Free, or held by a lapsed holder that may be taken over (a runner Job's only once it ended).
    Map<String, Waiting> connected = withRequester(local, info, caller);
    pruned = tidy(pruned, connected, now);
    LockCore.Outcome decided =
        core.step(
            CoreView.of(lease, pruned, now, replica, connected.keySet(), liveness, false),
            new LockCore.Arrive(info.id(), LockCore.Mode.EXCLUSIVE, owner, replica, true),
            now);
    if (decided.granted(info.id()).isEmpty()) {
      return joinOrWait(lease, line, pruned, info, caller, owner, waits, Optional.empty(), now);
    }
    if (mine.isPresent() && mine.get().gone() != null) {
      // The client is back: its place first, then the lock.
      return new Step<>(
          LeaseLock.withLine(lease, pruned.replace(mine.get().back(replica))), BACK_FIRST);
    }
    Lease held =
        LeaseLock.withLine(
            LeaseLock.heldBy(lease, info, caller.identity()), pruned.without(info.id()));
    return new Step<>(tookOver(held, holder), new Granted(info.id(), null, holder.isPresent()));
  }

  /** {@code held}, taken over from {@code previous} when there was one, saying so. */
  private static Lease tookOver(Lease held, Optional<Holder> previous) {
    return previous.isPresent() ? LeaseLock.tookOver(held, previous.get()) : held;
  }

  /**
   * A LOCK with the lock ID its own identity already holds the lock with. Terraform makes a new
   * lock ID for every lock, so this is a retry of the request that took it, whose answer was lost:
   * granted again, but only when it carries the very LockInfo the lock was taken with (its Created
   * time included). Any other LockInfo under that ID is another request reusing it: it is refused
   * as {@link Refusal#ID_IN_USE}, so that two requests are never both told they hold the lock.
   */
  private static Answer retryOrConflict(Holder h, Optional<LockInfo> held, LockInfo asked) {
    if (held.isPresent() && held.get().equals(asked)) {
      return new Granted(asked.id(), null, false);
    }
    String heldAs =
        held.map(
                i ->
                    "Who "
                        + io.leasehold.api.DisplayText.clean(i.who(), 64)
                        + ", Created "
                        + io.leasehold.api.DisplayText.clean(i.created(), 64))
            .orElse("no LockInfo");
    return new Refused(
        Refusal.ID_IN_USE,
        "lock ID "
            + asked.id()
            + " already holds the lock for another request of the same identity with a different"
            + " LockInfo ("
            + heldAs
            + "; this request: Who "
            + io.leasehold.api.DisplayText.clean(asked.who(), 64)
            + ", Created "
            + io.leasehold.api.DisplayText.clean(asked.created(), 64)
            + "): a LOCK with a held lock ID is granted again only as a retry with the same"
            + " LockInfo; use a new lock ID",
        Optional.of(h));
  }

  /** Not now: with {@code waits}, the requester takes its place in line (or takes it back). */
  private Step<Answer> joinOrWait(
      Lease lease,
      Line line,
      Line pruned,
      LockInfo info,
      Caller caller,
      String owner,
      boolean waits,
      Optional<Holder> holder,
      Instant now) {
    String holderJson =
        holder.isPresent() ? LeaseLock.holderJson(lease) : firstInLineJson(pruned, info.id());
    if (!waits) {
      int position = pruned.position(info.id());
      return Step.answer(new NotNow(holder, holderJson, position));
    }
    Optional<Ticket> mine = pruned.find(info.id());
    Line next;
    if (mine.isPresent()) {
      Ticket back = mine.get().back(replica);
      next = back.equals(mine.get()) ? pruned : pruned.replace(back);
    } else {
      if (pruned.clients() >= Line.MAX_CLIENTS) {
        return Step.answer(
            new Refused(
                Refusal.LINE_FULL,
                "the line for this state is full ("
                    + Line.MAX_CLIENTS
                    + " clients wait already), so this request is not in it; retry"
                    + " (terraform -lock-timeout does)",
                holder));
      }
      next = pruned.append(Ticket.client(info.id(), who(info, caller), owner, replica, now));
      if (!LeaseSize.lineFits(lease, next)) {
        return Step.answer(
            new Refused(
                Refusal.LINE_FULL,
                "the line for this state is full (its places take all the room the lock Lease"
                    + " has for them, "
                    + LeaseSize.LINE_BUDGET
                    + " bytes), so this request is not in it; retry (terraform -lock-timeout"
                    + " does)",
                holder));
      }
    }
    NotNow answer = new NotNow(holder, holderJson, next.position(info.id()));
    return next.equals(line)
        ? Step.answer(answer)
        : new Step<>(LeaseLock.withLine(lease, next), answer);
  }

  /**
   * This replica's places in line as it knows them: places of requests it no longer has (their
   * connection closed and the note is still on its way, or an earlier run of this replica) are
   * marked as left, and places of requests it does have that were marked as left (by a replica that
   * presumed this one gone) are taken back. So every write this replica makes says the truth about
   * its own clients.
   */
  private Line tidy(Line line, Map<String, Waiting> local, Instant now) {
    Line tidied = line;
    for (Ticket t : line.tickets()) {
      if (!t.isClient() || !replica.equals(t.replica())) {
        continue;
      }
      if (t.gone() == null && !local.containsKey(t.id())) {
        tidied = tidied.replace(t.goneAt(now));
      } else if (t.gone() != null && local.containsKey(t.id())) {
        tidied = tidied.replace(t.back(replica));
      }
    }
    return tidied;
  }

  private static String firstInLineJson(Line line, String except) {
    return line.tickets().stream()
        .filter(t -> !t.id().equals(except))
        .findFirst()
        .map(
            t ->
                new LockInfo(
                        t.isJob() ? "" : t.id(),
                        "",
                        "the lock is free but "
                            + (t.isJob() ? "runner Job " + t.who() : t.who())
                            + " is before you in line",
                        t.who() == null ? "" : t.who(),
                        "",
                        t.since().toString(),
                        "")
                    .toJson())
        .orElse(new LockInfo("", "", "others are before you in line", "", "", "", "").toJson());
  }

  private static Map<String, Waiting> withRequester(
      Map<String, Waiting> local, LockInfo info, Caller caller) {
    if (local.containsKey(info.id())) {
      return local;
    }
    var all = new java.util.HashMap<>(local);
    all.put(info.id(), new Waiting(info, caller));
    return all;
  }

  /**
   * Grants the free lock to the first in line if that is a connected request of this replica.
   * Called whenever the Lease changes and when a local request arrives, leaves or times out.
   */
  public Optional<Granted> serve(StateNames names, Map<String, Waiting> local) {
    for (int round = 0; ; round++) {
      Optional<Granted> granted = serveOnce(names, local);
      if (granted.isPresent() && granted.get() == SERVE_BACK_FIRST && round < ATTEMPTS) {
        continue;
      }
      return granted.filter(g -> g != SERVE_BACK_FIRST);
    }
  }

  private Optional<Granted> serveOnce(StateNames names, Map<String, Waiting> local) {
    Lease[] written = new Lease[1];
    Optional<Granted> granted =
        transition(
            names,
            lease -> {
              if (closed(names).isPresent()) {
                // Nobody is granted the lock of a state being deleted; its waiters are refused.
                return Step.answer(Optional.<Granted>empty());
              }
              Instant now = clock.instant();
              Line line = LeaseLock.line(lease);
              Line pruned = tidy(kept(line, now), local, now);
              // Requests waiting here whose places were lost (the line was edited by hand, or
              // cleared by a client that rewrote the Lease's annotations) join again at the back.
              for (Waiting w : local.values()) {
                if (pruned.find(w.info().id()).isEmpty() && pruned.clients() < Line.MAX_CLIENTS) {
                  Line joined =
                      pruned.append(
                          Ticket.client(
                              w.info().id(),
                              who(w.info(), w.caller()),
                              Caller.digest(w.caller().identity()),
                              replica,
                              now));
                  if (LeaseSize.lineFits(lease, joined)) {
                    pruned = joined;
                  }
                }
              }
              Optional<Holder> holder = Holder.of(lease, now);
              Lease tidied = pruned.equals(line) ? null : LeaseLock.withLine(lease, pruned);
              if (holder.isPresent() && !mayTakeOver(names.namespace(), holder.get())) {
                return new Step<>(tidied, Optional.<Granted>empty());
              }
              Optional<LockCore.Granted> first =
                  core
                      .step(
                          CoreView.of(lease, pruned, now, replica, local.keySet(), liveness, false),
                          new LockCore.Tick(),
                          now)
                      .effects()
                      .stream()
                      .filter(e -> e instanceof LockCore.Granted)
                      .map(LockCore.Granted.class::cast)
                      .findFirst();
              if (first.isEmpty()
                  || first.get().kind() != LockCore.Kind.CLIENT
                  || !replica.equals(first.get().replica())
                  || !local.containsKey(first.get().id())) {
                return new Step<>(tidied, Optional.<Granted>empty());
              }
              Waiting w = local.get(first.get().id());
              if (line.find(w.info().id()).map(t -> t.gone() != null).orElse(false)) {
                // Its place said it had left: taken back first, granted in the next write.
                return new Step<>(tidied, Optional.of(SERVE_BACK_FIRST));
              }
              Lease held =
                  LeaseLock.withLine(
                      LeaseLock.heldBy(lease, w.info(), w.caller().identity()),
                      pruned.without(w.info().id()));
              return new Step<>(
                  tookOver(held, holder),
                  Optional.of(new Granted(w.info().id(), null, holder.isPresent())));
            },
            written);
    return granted.map(
        g -> g == SERVE_BACK_FIRST ? g : new Granted(g.lockId(), written[0], g.tookOver()));
  }

  /**
   * Client {@code id}'s request on this replica ended (answered, or its connection closed): it
   * keeps its place for the grace period but may not be granted the lock until it comes back.
   */
  public void left(StateNames names, String id) {
    freshTransition(
        names,
        lease -> {
          Line line = LeaseLock.line(lease);
          Optional<Ticket> t = line.find(id);
          if (t.isEmpty() || t.get().gone() != null || !replica.equals(t.get().replica())) {
            return Step.answer(Boolean.FALSE);
          }
          Line next = kept(line.replace(t.get().goneAt(clock.instant())), now());
          return new Step<>(LeaseLock.withLine(lease, next), Boolean.TRUE);
        });
  }

  /** Removes from line the clients whose grace period ran out. */
  public void prune(StateNames names) {
    freshTransition(
        names,
        lease -> {
          Line line = LeaseLock.line(lease);
          Line pruned = kept(line, clock.instant());
          return pruned.equals(line)
              ? Step.answer(Boolean.FALSE)
              : new Step<>(LeaseLock.withLine(lease, pruned), Boolean.TRUE);
        });
  }

  private Duration grace() {
    return settings.ticketGrace();
  }

  /**
   * The places that may still wait at {@code now}: without clients whose grace ran out and without
   * every place of a replica that is not alive (crashed, stopped, or an earlier run of a restarted
   * one), so that no write to the lock keeps them and they never block a free lock.
   */
  public Line kept(Line line, Instant now) {
    return line.pruned(now, settings.ticketGrace())
        .filter(t -> !t.isClient() || liveness.alive(t.replica()));
  }

  /** Which replicas are alive. */
  public ReplicaLiveness liveness() {
    return liveness;
  }

  /**
   * Undoes a grant whose answer could not be delivered (the client went away in between): the lock
   * is released if it is still held by that lock ID for that identity. Returns whether it was.
   */
  public boolean undo(StateNames names, Granted granted, Caller caller) {
    return freshTransition(
        names,
        lease -> {
          Optional<Holder> h = Holder.of(lease, clock.instant());
          if (h.isEmpty() || !h.get().id().equals(granted.lockId()) || !ownedBy(h.get(), caller)) {
            return Step.answer(Boolean.FALSE);
          }
          return new Step<>(LeaseLock.released(lease), Boolean.TRUE);
        });
  }

  /**
   * UNLOCK by the lock's holder: releases it (or the nested lock of a runner Job's pod). The ID of
   * a lock another identity owns is refused as {@link Refusal#NOT_OWNER}; see {@link #forceUnlock}.
   */
  public Answer unlock(StateNames names, String lockId, Caller caller) {
    return freshTransition(
        names,
        lease -> {
          Optional<Holder> holder = Holder.of(lease, clock.instant());
          if (holder.isEmpty()) {
            return Step.answer(
                new NotHeld(
                    Optional.empty(), "lock " + lockId + " is not held: the state is unlocked"));
          }
          Holder h = holder.get();
          if (h.id().equals(lockId)) {
            if (!ownedBy(h, caller)) {
              return Step.answer(notOwner(names, h, caller));
            }
            return new Step<>(LeaseLock.released(lease), new Released(h, false));
          }
          Optional<Holder.Nested> nested = h.nested();
          if (nested.isPresent() && nested.get().info().id().equals(lockId)) {
            if (!nested.get().owner().map(caller.identity()::equals).orElse(false)) {
              return Step.answer(
                  new Refused(
                      Refusal.NOT_OWNER,
                      "lock "
                          + lockId
                          + " was taken by another identity (the runner Job's pod); releasing"
                          + " it needs the force-unlock permission",
                      holder));
            }
            return new Step<>(LeaseLock.withNested(lease, null, null), new Released(h, true));
          }
          return Step.answer(
              new NotHeld(
                  holder,
                  "lock "
                      + lockId
                      + " does not hold the state: it is locked by "
                      + h.summary()
                      + " (lock ID "
                      + h.id()
                      + ")"));
        });
  }

  /**
   * Releases the lock whoever holds it, or only when its ID is {@code expectedId}: {@code terraform
   * force-unlock} and the {@code leasehold.io/force-unlock} annotation. The caller has checked that
   * the requester may.
   */
  public Answer forceUnlock(StateNames names, Optional<String> expectedId) {
    return freshTransition(
        names,
        lease -> {
          Optional<Holder> holder = Holder.of(lease, clock.instant());
          if (holder.isEmpty()) {
            return Step.answer(new NotHeld(Optional.empty(), "the state is not locked"));
          }
          Holder h = holder.get();
          if (h.unreadable()) {
            // Writing it would replace what cannot be read: it is corrected by hand.
            return Step.answer(
                new NotHeld(
                    holder,
                    "the lock Lease "
                        + names.leaseName()
                        + " cannot be read, so who holds the lock is not known; leasehold leaves"
                        + " it untouched: correct the Lease"));
          }
          if (expectedId.isPresent() && !expectedId.get().equals(h.id())) {
            Optional<Holder.Nested> nested = h.nested();
            if (nested.isPresent() && nested.get().info().id().equals(expectedId.get())) {
              return new Step<>(LeaseLock.withNested(lease, null, null), new Released(h, true));
            }
            return Step.answer(
                new NotHeld(
                    holder,
                    "lock "
                        + expectedId.get()
                        + " is not the holder's: the lock is held by "
                        + h.summary()
                        + " with ID "
                        + h.id()));
          }
          return new Step<>(LeaseLock.released(lease), new Released(h, false));
        });
  }

  /**
   * Whether a POST or DELETE carrying {@code lockId} may go ahead: it must carry the holder's ID
   * (or none while nobody holds the lock), and that lock must be the caller's. Read from the API
   * server, not the cache.
   */
  public Answer checkWrite(StateNames names, String lockId, Caller caller, String what) {
    Lease lease = peek(names).orElse(null);
    if (lease == null && closed(names).isEmpty()) {
      // Deleted outside leasehold, perhaps under this very writer: recreated as it was.
      lease = read(names, true);
    }
    Instant now = clock.instant();
    Optional<Holder> holder = lease == null ? Optional.empty() : Holder.of(lease, now);
    boolean hasId = lockId != null && !lockId.isBlank();
    Optional<String> closed = closed(names);
    if (holder.isEmpty()) {
      if (hasId) {
        return new Refused(
            Refusal.STALE_LOCK,
            "lock " + lockId + " no longer holds the state: it was released, broken or expired",
            Optional.empty());
      }
      if (closed.isPresent()) {
        return new Refused(Refusal.DELETING, closed.get(), Optional.empty());
      }
      return new Allowed();
    }
    Holder h = holder.get();
    if (!hasId && closed.isPresent()) {
      return new Refused(Refusal.DELETING, closed.get(), holder);
    }
    if (!hasId) {
      return new Refused(
          Refusal.LOCKED,
          "locked by "
              + h.summary()
              + " (lock ID "
              + h.id()
              + "); a "
              + what
              + " without the lock (-lock=false) is refused while the state is locked",
          holder);
    }
    if (mayTakeOver(names.namespace(), h)) {
      return new Refused(
          Refusal.STALE_LOCK,
          "lock " + h.id() + " expired: its holder stopped renewing it; take the lock again",
          holder);
    }
    if (h.id().equals(lockId)) {
      return ownedBy(h, caller) ? new Allowed() : notOwner(names, h, caller);
    }
    Optional<Holder.Nested> nested = h.nested();
    if (nested.isPresent() && nested.get().info().id().equals(lockId)) {
      return nested.get().owner().map(caller.identity()::equals).orElse(false)
          ? new Allowed()
          : new Refused(
              Refusal.NOT_OWNER,
              "lock "
                  + lockId
                  + " was taken by the runner Job's pod; another identity needs the force-unlock"
                  + " permission to use it",
              holder);
    }
    return new Refused(
        Refusal.STALE_LOCK,
        "lock "
            + lockId
            + " does not hold the state; it is locked by "
            + h.summary()
            + " (lock ID "
            + h.id()
            + ")",
        holder);
  }

  /**
   * Whether {@code caller} owns lock {@code h}: the identity that took it through the backend; for
   * a runner Job's lock, the Job's pods. A lock taken by stock Terraform records no identity, so no
   * backend client owns it.
   */
  private static boolean ownedBy(Holder h, Caller caller) {
    Optional<String> jobUid = h.jobUid();
    if (jobUid.isPresent()) {
      return false;
    }
    return h.owner().map(caller.identity()::equals).orElse(false);
  }

  private static Refused notOwner(StateNames names, Holder h, Caller caller) {
    String owner =
        h.jobUid().isPresent()
            ? "runner Job " + LeaseLock.jobName(h.id()) + " (leasehold holds it for the Job)"
            : h.owner().map(o -> o).orElse("a client of Terraform's kubernetes backend");
    return new Refused(
        Refusal.NOT_OWNER,
        "lock "
            + h.id()
            + " of "
            + names.namespace()
            + "/"
            + names.name()
            + " belongs to "
            + owner
            + ", held by "
            + h.summary()
            + "; "
            + caller.describe()
            + " needs the force-unlock permission on terraformstates/state to use it",
        Optional.of(h));
  }

  private static String who(LockInfo info, Caller caller) {
    String who = info.who() == null || info.who().isBlank() ? caller.describe() : info.who();
    return who.length() <= 64 ? who : who.substring(0, 64);
  }

  // ------------------------------------------------------------------------------ runner Jobs

  /**
   * Keeps the Jobs in line in step with the Jobs waiting: appends those not yet in line, in the
   * order given (their order of arrival), and removes those no longer waiting. Returns the Lease,
   * written only if the line changed.
   */
  public Lease lineUp(StateNames names, List<Ticket> waitingJobs) {
    Lease[] written = new Lease[1];
    Set<String> waiting =
        waitingJobs.stream().map(Ticket::id).collect(java.util.stream.Collectors.toSet());
    Lease unchanged =
        transition(
            names,
            lease -> {
              Line line = LeaseLock.line(lease);
              Line next =
                  kept(line.filter(t -> !t.isJob() || waiting.contains(t.id())), clock.instant());
              long room = LeaseSize.lineRoom(lease, next);
              for (Ticket job : waitingJobs) {
                if (next.jobs() >= Line.MAX_JOBS) {
                  break;
                }
                if (next.find(job.id()).isEmpty()) {
                  room -= LeaseSize.place(job);
                  if (room < 0) {
                    // No room left on the Lease: it waits unlined, like Jobs beyond MAX_JOBS.
                    break;
                  }
                  next = next.append(job);
                }
              }
              return next.equals(line)
                  ? Step.answer(lease)
                  : new Step<>(LeaseLock.withLine(lease, next), (Lease) null);
            },
            written);
    return unchanged != null ? unchanged : written[0];
  }

  /** Who the lock goes to next, as every replica sees it: the first Job or client in line. */
  public Optional<Ticket> next(Lease lease) {
    Instant now = clock.instant();
    Line line = kept(LeaseLock.line(lease), now);
    LockCore.State seen = CoreView.of(lease, line, now, replica, null, liveness, false);
    // Who would take it were it free now (the holder may be the Job that just ended).
    LockCore.State free =
        new LockCore.State(List.of(), seen.line(), seen.alive(), seen.leader(), false);
    return core.step(free, new LockCore.Tick(), now).effects().stream()
        .filter(e -> e instanceof LockCore.Granted)
        .map(e -> ((LockCore.Granted) e).id())
        .findFirst()
        .flatMap(line::find);
  }

  /**
   * Takes the lock for a runner Job (its turn has come: the lock is free, expired, or held by the
   * Job that just ended, {@code endedUid}), removes it from line and records it as running, in one
   * conditional write on {@code lease}.
   *
   * @throws KubernetesClientException with code 409 when the Lease changed since it was read, or
   *     when {@code lease} shows the lock held by anyone else (nothing is written then)
   */
  public Lease admit(
      Lease lease, LockInfo jobLock, String jobUid, int durationSeconds, String endedUid) {
    Optional<Holder> holder = Holder.of(lease, clock.instant());
    if (holder.isPresent()
        && !holder.get().jobUid().filter(u -> u.equals(endedUid) || u.equals(jobUid)).isPresent()
        && !mayTakeOver(lease.getMetadata().getNamespace(), holder.get())) {
      // Decided on an older version of the Lease: the lock was taken meanwhile. Never over it.
      throw new KubernetesClientException(
          "the lock on Lease "
              + lease.getMetadata().getName()
              + " is held by "
              + holder.get().id()
              + ": runner Job "
              + LeaseLock.jobName(jobLock.id())
              + " is not admitted over it; look again",
          409,
          null);
    }
    java.util.List<LeaseLock.RunningJob> running =
        new java.util.ArrayList<>(
            LeaseLock.running(lease).stream()
                .filter(r -> !r.uid().equals(endedUid) && !r.uid().equals(jobUid))
                .toList());
    running.add(new LeaseLock.RunningJob(jobUid, LeaseLock.jobName(jobLock.id())));
    Optional<Holder> takenOver =
        holder.filter(
            h ->
                h.expired()
                    && !h.jobUid().filter(u -> u.equals(endedUid) || u.equals(jobUid)).isPresent());
    Lease held =
        LeaseLock.withRunning(
            LeaseLock.withLine(
                tookOver(
                    LeaseLock.heldFor(lease, jobLock, durationSeconds, clock.instant()), takenOver),
                kept(LeaseLock.line(lease).without(jobUid), clock.instant())),
            running);
    return write(lease, held);
  }

  /**
   * Releases the lock of runner Job {@code endedUid}, which ended, in one conditional write on
   * {@code lease}.
   *
   * @throws KubernetesClientException with code 409 when the Lease changed since it was read
   */
  public Lease releaseJob(Lease lease, String endedUid) {
    return write(
        lease,
        LeaseLock.withRunning(
            LeaseLock.withLine(
                LeaseLock.released(lease), kept(LeaseLock.line(lease), clock.instant())),
            LeaseLock.running(lease).stream().filter(r -> !r.uid().equals(endedUid)).toList()));
  }

  /** Forgets runner Jobs seen to have ended while someone else held the lock. */
  public Lease ended(StateNames names, java.util.Set<String> endedUids) {
    return update(
        names,
        lease ->
            LeaseLock.withRunning(
                lease,
                LeaseLock.running(lease).stream()
                    .filter(r -> !endedUids.contains(r.uid()))
                    .toList()));
  }

  /**
   * Renews the lock of runner Job lock {@code holderId} if it still holds it. Returns the renewed
   * Lease, or empty when the lock is no longer that Job's.
   */
  public Optional<Lease> renew(StateNames names, String holderId, int durationSeconds) {
    Lease[] written = new Lease[1];
    boolean renewed =
        transition(
            names,
            lease -> {
              Optional<Holder> h = Holder.of(lease, clock.instant());
              if (h.isEmpty() || !h.get().vouched() || !h.get().id().equals(holderId)) {
                return Step.answer(Boolean.FALSE);
              }
              return new Step<>(
                  LeaseLock.renewed(lease, durationSeconds, clock.instant()), Boolean.TRUE);
            },
            written);
    return renewed ? Optional.of(written[0]) : Optional.empty();
  }

  /**
   * The Lease is gone while runner Job {@code jobLock}, admitted for the state, still runs: it is
   * created as it was when the watch saw it deleted (its lock and line) or, when that is not known
   * (the operator was away), held for that Job, so the lock is never free under a running Job.
   * Returns the Lease, or the one someone else created first; empty when none can be created
   * because its namespace is being deleted (the Job with it): nobody can take the lock there.
   */
  public Optional<Lease> recreateForRunning(
      StateNames names, LockInfo jobLock, int durationSeconds, List<LeaseLock.RunningJob> running) {
    try {
      Lease created =
          client
              .leases()
              .inNamespace(names.namespace())
              .resource(
                  recreation(names, leases.cached(names.namespace(), names.leaseName()))
                      .orElseGet(
                          () ->
                              LeaseLock.heldForRunning(
                                  names, jobLock, durationSeconds, clock.instant(), running)))
              .create();
      leases.written(null, created);
      leases.forgetDeleted(names.namespace(), names.leaseName());
      LOG.warn(
          "{}/{}: the lock Lease {} was gone while runner Job {} ran; it is recreated held by {}",
          names.namespace(),
          names.name(),
          names.leaseName(),
          LeaseLock.jobName(jobLock.id()),
          Holder.of(created, clock.instant()).map(Holder::summary).orElse("nobody"));
      return Optional.of(created);
    } catch (KubernetesClientException e) {
      if (e.getCode() == 409) {
        return Optional.of(peek(names).orElseThrow(() -> e));
      }
      if (ApiRefusals.namespaceTerminating(e)) {
        return Optional.empty();
      }
      throw e;
    }
  }

  /**
   * Empties the line: the state is being deleted, and nobody waiting in it will be served. Returns
   * the Lease, or empty when there is none.
   */
  public Optional<Lease> clearLine(StateNames names) {
    Optional<Lease> existing = existing(names);
    if (existing.isEmpty() || LeaseLock.line(existing.get()).isEmpty()) {
      return existing;
    }
    return Optional.of(
        update(
            names,
            lease ->
                LeaseLock.line(lease).isEmpty() ? lease : LeaseLock.withLine(lease, Line.EMPTY)));
  }

  /** Applies {@code change} to the Lease as it is now, conditionally, retrying on conflicts. */
  private Lease update(StateNames names, UnaryOperator<Lease> change) {
    Lease[] written = new Lease[1];
    transition(
        names,
        lease -> {
          Lease next = change.apply(lease);
          return next == null || next.equals(lease)
              ? Step.answer(Boolean.FALSE)
              : new Step<>(next, Boolean.TRUE);
        },
        written);
    return written[0] != null ? written[0] : current(names);
  }

  // ------------------------------------------------------------------------------ deletion

  /**
   * Deletes the lock Lease of a state deleted with {@code deletionPolicy: Delete}, whose deletion
   * holds the lock: only at the version this replica last saw, so a Lease someone changed meanwhile
   * is not deleted (the conflict is retried by the caller). Returns whether there was one.
   */
  public boolean deleteWithState(StateNames names) {
    Optional<Lease> lease = peek(names);
    if (lease.isEmpty()) {
      return false;
    }
    client
        .leases()
        .inNamespace(names.namespace())
        .resource(lease.get())
        .lockResourceVersion(lease.get().getMetadata().getResourceVersion())
        .delete();
    return true;
  }

  static final String DELETION_PREFIX = "leasehold-delete/";

  /** The deletion lock's ID: stable for the TerraformState, so every retry asks for the same. */
  public static String deletionLockId(String stateUid) {
    return DELETION_PREFIX + stateUid;
  }

  /**
   * Takes the lock to delete the state (deletionPolicy Delete), with an ID stable across retries:
   * granted when free or already taken for this deletion; otherwise says who holds it. Granted
   * without a Lease when there is none and none can be created because its namespace is being
   * deleted: nobody can take the lock there any more.
   */
  public Answer lockForDeletion(StateNames names, String stateUid) {
    String id = deletionLockId(stateUid);
    LockInfo info =
        new LockInfo(
            id,
            "delete",
            "deleting TerraformState "
                + names.namespace()
                + "/"
                + names.name()
                + " (deletionPolicy Delete)",
            "leasehold",
            "leasehold",
            clock.instant().truncatedTo(java.time.temporal.ChronoUnit.SECONDS).toString(),
            names.secretName());
    try {
      return freshTransition(
          names,
          lease -> {
            Optional<Holder> holder = Holder.of(lease, clock.instant());
            if (holder.isPresent() && holder.get().id().equals(id)) {
              return Step.answer(new Granted(id, lease, false));
            }
            if (holder.isPresent() && !mayTakeOver(names.namespace(), holder.get())) {
              return Step.answer(new NotNow(holder, LeaseLock.holderJson(lease), 0));
            }
            return new Step<>(
                tookOver(LeaseLock.heldBy(lease, info, Caller.LEASEHOLD.identity()), holder),
                new Granted(id, null, holder.isPresent()));
          });
    } catch (KubernetesClientException e) {
      if (!ApiRefusals.namespaceTerminating(e)) {
        throw e;
      }
      // The Lease is gone (only a create is refused so) and its namespace is being deleted: no
      // one, stock Terraform included, can create it to take the lock, and the namespace
      // controller removes whatever is left. Waiting for a lock would hold the namespace forever.
      LOG.info(
          "{}/{}: lock Lease {} is gone and its namespace is being deleted; the state is deleted"
              + " without taking the lock",
          names.namespace(),
          names.name(),
          names.leaseName());
      return new Granted(id, null, false);
    }
  }
}
