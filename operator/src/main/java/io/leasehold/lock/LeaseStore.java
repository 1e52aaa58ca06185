package io.leasehold.lock;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.leasehold.state.StateNames;
import java.time.Clock;
import java.time.Duration;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Function;
import java.util.function.Supplier;
import java.util.function.UnaryOperator;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Reads, creates and writes the lock Lease for the {@link LockService}: the only code that touches
 * a lock Lease in the API. Every change is a transition: a decision made on one version of the
 * Lease and written conditionally on that version; when someone else wrote in between, the decision
 * is made again on the version the API server has now, backing off between attempts.
 *
 * <p>A missing Lease is created as it was when it was deleted outside leasehold (its lock, its
 * line), so that a lock is never free under a running Job or a client in the middle of an apply.
 */
final class LeaseStore {

  /**
   * A transition on a Lease that others keep changing is attempted at least {@code ATTEMPTS} times
   * and for at least {@code CONTENDED_BUDGET}, backing off between attempts, before it gives up
   * with {@link LockService.Busy} (nothing written).
   */
  static final int ATTEMPTS = 10;

  private static final Duration CONTENDED_BUDGET = Duration.ofSeconds(5);

  private static final long MAX_BACKOFF_MILLIS = 50;
  private static final Logger LOG = LoggerFactory.getLogger(LeaseStore.class);

  /** A decision made on one version of the Lease: what to write (if anything) and the answer. */
  record Step<A>(Lease write, A answer) {
    static <A> Step<A> answer(A answer) {
      return new Step<>(null, answer);
    }
  }

  private final KubernetesClient client;
  private final LockService.LeaseSource leases;
  private final Clock clock;

  /**
   * Transitions on one Lease made by this process take turns (fairly, in the order they asked):
   * they would otherwise only conflict with each other and retry. Writers elsewhere (another
   * replica, stock Terraform) are still met by the conditional write. Striped, so memory stays
   * bounded however many states there are.
   */
  private final ReentrantLock[] turns = new ReentrantLock[256];

  LeaseStore(KubernetesClient client, LockService.LeaseSource leases, Clock clock) {
    this.client = client;
    this.leases = leases;
    this.clock = clock;
    for (int i = 0; i < turns.length; i++) {
      turns[i] = new ReentrantLock(true);
    }
  }

  LockService.LeaseSource source() {
    return leases;
  }

  /** The Lease as last seen (the cache), created unlocked when there is none. */
  Lease current(StateNames names) {
    return read(names, false);
  }

  /** The Lease as the API server has it now, created unlocked when there is none. */
  Lease fresh(StateNames names) {
    return read(names, true);
  }

  /** The Lease as the API server has it now, without creating it. */
  Optional<Lease> peek(StateNames names) {
    return Optional.ofNullable(
        client.leases().inNamespace(names.namespace()).withName(names.leaseName()).get());
  }

  /** The Lease as cached, or as the API server has it; empty when there is none. Never creates. */
  Optional<Lease> existing(StateNames names) {
    Optional<Lease> cached = leases.cached(names.namespace(), names.leaseName());
    return cached.isPresent() ? cached : peek(names);
  }

  /** How many plans may hold the state's lock at once. */
  int maxParallelPlans(StateNames names) {
    return leases.maxParallelPlans(names.namespace(), names.name());
  }

  /** Why the state takes no new locks: its TerraformState is being deleted. Empty when it does. */
  Optional<String> closed(StateNames names) {
    return leases.closed(names.namespace(), names.name());
  }

  /**
   * The Lease to decide on. A missing Lease is created: unlocked, or as it was when it was deleted
   * outside leasehold (its lock, its line), so that a lock is never free under a running Job or a
   * client in the middle of an apply. For a state being deleted nothing is created here: the
   * decision works on an unlocked Lease not yet stored, and a write, if any, creates it.
   */
  Lease read(StateNames names, boolean fresh) {
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
      Lease created = create(names, lost.orElseGet(() -> LeaseLock.unlocked(names)));
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
   * Creates the Lease that is gone: as it was when the watch last saw it deleted, else {@code
   * otherwise}. Fails with code 409 when someone created it first.
   */
  Lease recreate(StateNames names, Supplier<Lease> otherwise) {
    return create(
        names,
        recreation(names, leases.cached(names.namespace(), names.leaseName()))
            .orElseGet(otherwise));
  }

  private Lease create(StateNames names, Lease lease) {
    Lease created = client.leases().inNamespace(names.namespace()).resource(lease).create();
    leases.written(null, created);
    leases.forgetDeleted(names.namespace(), names.leaseName());
    return created;
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
    if (holder.isPresent() && holder.get().id().startsWith(DeletionLock.PREFIX)
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
  Lease write(Lease before, Lease changed) {
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

  /**
   * Deletes the Lease, only at the version the API server has now, so a Lease someone changed
   * meanwhile is not deleted. Returns whether there was one.
   */
  boolean deleteAsSeen(StateNames names) {
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

  /**
   * Decides on the Lease as cached and writes the decision conditionally; when the Lease changed in
   * between, decides again on the version the API server has.
   */
  <A> A transition(StateNames names, Function<Lease, Step<A>> decide) {
    return transition(names, decide, null, false);
  }

  /** As {@link #transition(StateNames, Function)}, putting the Lease written in {@code written}. */
  <A> A transition(StateNames names, Function<Lease, Step<A>> decide, Lease[] written) {
    return transition(names, decide, written, false);
  }

  /**
   * As {@link #transition(StateNames, Function)}, reading the Lease from the API server from the
   * start: for decisions whose "nothing to do" must not rest on a cache that may not show this
   * replica's own last write yet (an UNLOCK right after its LOCK, undoing a grant just written).
   */
  <A> A freshTransition(StateNames names, Function<Lease, Step<A>> decide) {
    return transition(names, decide, null, true);
  }

  /**
   * A transition, reading the Lease from the API server from the start when {@code freshFirst}, and
   * putting the Lease written (if any) in {@code written} when that is not null.
   */
  <A> A transition(
      StateNames names, Function<Lease, Step<A>> decide, Lease[] written, boolean freshFirst) {
    ReentrantLock turn =
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
      StateNames names, Function<Lease, Step<A>> decide, Lease[] written, boolean freshFirst) {
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
    throw new LockService.Busy(names);
  }

  private static void backOff(int attempt) {
    long bound = Math.min(MAX_BACKOFF_MILLIS, 1L << Math.min(attempt, 6));
    try {
      Thread.sleep(1 + ThreadLocalRandom.current().nextLong(bound));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new KubernetesClientException("interrupted while the lock Lease was contended", e);
    }
  }

  /** Applies {@code change} to the Lease as it is now, conditionally, retrying on conflicts. */
  Lease update(StateNames names, UnaryOperator<Lease> change) {
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
}
