package io.leasehold.lock;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.lock.LeaseStore.Step;
import io.leasehold.lock.LockService.Answer;
import io.leasehold.lock.LockService.Granted;
import io.leasehold.lock.LockService.NotNow;
import io.leasehold.lock.LockService.Refusal;
import io.leasehold.lock.LockService.Refused;
import io.leasehold.lock.LockService.Waiting;
import io.leasehold.state.StateNames;
import java.time.Clock;
import java.time.Instant;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Clients' LOCK requests and the serving of those waiting on this replica. A free lock goes to the
 * first in line that may take it now ({@link LockCore} decides, on the Lease as this replica sees
 * it: {@link CoreView}): a client only while its request is connected. A client whose request ended
 * keeps its place for a grace period, so Terraform's retry with the same lock ID is served before
 * later arrivals, and takes it back when it returns; a place this replica marked as left is taken
 * back in one write before the lock is granted in the next, so the Lease never shows a grant to a
 * client it last showed as gone.
 */
final class ClientLocks {

  /**
   * Written first when the lock is to go to a client whose place says it had left: the place is
   * taken back in one write and the lock granted in the next, so the Lease never shows a grant to a
   * client it last showed as gone.
   */
  private static final NotNow BACK_FIRST = new NotNow(Optional.empty(), "", -1);

  private static final Granted SERVE_BACK_FIRST = new Granted("", null, false);

  private final LeaseStore store;
  private final Clock clock;
  private final String replica;
  private final ReplicaLiveness liveness;
  private final PlaceKeeping places;
  private final TakeOvers takeOvers;
  private final LockCore core;

  ClientLocks(
      LeaseStore store,
      Clock clock,
      ReplicaLiveness liveness,
      PlaceKeeping places,
      TakeOvers takeOvers,
      LockCore core) {
    this.store = store;
    this.clock = clock;
    this.replica = liveness.self();
    this.liveness = liveness;
    this.places = places;
    this.takeOvers = takeOvers;
    this.core = core;
  }

  /**
   * A client's LOCK. Granted when the lock is free and nobody who may take it now stands before the
   * client in line (or the client already holds it); otherwise not now, and with {@code waits} the
   * client takes (or takes back) its place in line.
   *
   * @param local the requests waiting on this replica whose connections are open, by lock ID; the
   *     requester counts as one of them
   */
  Answer lock(
      StateNames names, LockInfo info, Caller caller, boolean waits, Map<String, Waiting> local) {
    for (int round = 0; ; round++) {
      Lease[] written = new Lease[1];
      Answer answer =
          store.transition(
              names,
              lease -> decideLock(names, lease, info, caller, waits, local),
              written,
              !waits);
      if (answer == BACK_FIRST && round < LeaseStore.ATTEMPTS) {
        continue;
      }
      if (answer instanceof Granted g && g.lease() == null && written[0] != null) {
        return new Granted(g.lockId(), written[0], g.tookOver());
      }
      return answer;
    }
  }

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
    Optional<Refused> cancelled = Cancels.refusedLock(lease, info.id(), now);
    if (cancelled.isPresent()) {
      return Step.answer(cancelled.get());
    }
    String owner = Caller.digest(caller.identity());
    Line line = LeaseLock.line(lease);
    Line pruned = places.kept(line, now);
    Optional<Ticket> mine = pruned.find(info.id());
    if (mine.isPresent() && (!mine.get().isClient() || !owner.equals(mine.get().owner()))) {
      return Step.answer(
          new Refused(
              Refusal.NOT_OWNER,
              "lock ID " + info.id() + " is in line for another identity; use a new lock ID",
              Optional.empty()));
    }
    Optional<Holder> holder = Holder.of(lease, now);
    boolean plan = PlanHolds.isPlan(info);
    List<PlanHolds.Plan> plans = PlanHolds.of(lease);
    if (!plans.isEmpty()) {
      Optional<PlanHolds.Plan> held =
          plans.stream().filter(p -> p.id().equals(info.id())).findFirst();
      if (held.isPresent()) {
        return Step.answer(Retries.planRetry(names, held.get(), info, caller));
      }
      if (!plan) {
        Optional<String> closed = store.closed(names);
        if (closed.isPresent()) {
          return Step.answer(new Refused(Refusal.DELETING, closed.get(), holder));
        }
        // Plans hold the lock: a run that writes waits until they end.
        return joinOrWait(lease, line, pruned, info, caller, owner, waits, holder, now);
      }
      // A plan while plans hold the lock: the core decides below whether it joins them.
    } else if (holder.isPresent() && !takeOvers.mayTakeOver(names.namespace(), holder.get())) {
      Holder h = holder.get();
      if (h.id().equals(info.id())) {
        if (!Ownership.ownedBy(h, caller)) {
          return Step.answer(Ownership.notOwner(names, h, caller));
        }
        return Step.answer(Retries.retryOrConflict(h, h.info(), info));
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
            && Ownership.ownsNested(nested.get(), caller)) {
          return Step.answer(Retries.retryOrConflict(h, Optional.of(nested.get().info()), info));
        }
        return Step.answer(new NotNow(holder, nested.get().info().toJson(), 0));
      }
      Optional<String> closed = store.closed(names);
      if (closed.isPresent()) {
        return Step.answer(new Refused(Refusal.DELETING, closed.get(), holder));
      }
      return joinOrWait(lease, line, pruned, info, caller, owner, waits, holder, now);
    }
    Optional<String> closed = store.closed(names);
    if (closed.isPresent()) {
      return Step.answer(new Refused(Refusal.DELETING, closed.get(), holder));
    }
    // Free, or held by a lapsed holder that may be taken over (a runner Job's only once it ended).
    Map<String, Waiting> connected = withRequester(local, info, caller);
    pruned = tidy(pruned, connected, now);
    Optional<Holder> shown = plans.isEmpty() ? Optional.empty() : holder;
    LockCore.Outcome decided =
        core.sharing(store.maxParallelPlans(names))
            .step(
                CoreView.of(lease, pruned, now, replica, connected.keySet(), false),
                new LockCore.Arrive(info.id(), mode(info), owner, replica, true),
                now);
    if (decided.granted(info.id()).isEmpty()) {
      return joinOrWait(lease, line, pruned, info, caller, owner, waits, shown, now);
    }
    if (mine.isPresent() && mine.get().gone() != null) {
      // The client is back: its place first, then the lock.
      return new Step<>(
          LeaseLock.withLine(lease, pruned.replace(mine.get().back(replica))), BACK_FIRST);
    }
    Optional<Lease> held = heldBy(lease, info, caller, pruned.without(info.id()));
    if (held.isEmpty()) {
      return joinOrWait(lease, line, pruned, info, caller, owner, waits, shown, now);
    }
    Optional<Holder> taken = plans.isEmpty() ? holder : Optional.empty();
    return new Step<>(
        LeaseLock.tookOver(held.get(), taken), new Granted(info.id(), null, taken.isPresent()));
  }

  private static LockCore.Mode mode(LockInfo info) {
    return PlanHolds.isPlan(info) ? LockCore.Mode.SHARED : LockCore.Mode.EXCLUSIVE;
  }

  /**
   * {@code lease} held by {@code info} as well (a plan beside the plans holding it) or alone, with
   * {@code line}; empty when a plan's entry would not fit on the Lease beside the line.
   */
  private static Optional<Lease> heldBy(Lease lease, LockInfo info, Caller caller, Line line) {
    if (!PlanHolds.isPlan(info)) {
      // A plan's pod is not recorded: plans share the lock, and their own entries say who holds.
      return Optional.of(
          LeaseLock.withLine(
              LeaseLock.withHolderPod(
                  LeaseLock.heldBy(lease, info, caller.identity()), info.id(), caller.pod()),
              line));
    }
    Lease held = LeaseLock.withLine(PlanHolds.granted(lease, info, caller.identity()), line);
    return LeaseSize.lineFits(held, line) ? Optional.of(held) : Optional.empty();
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
        holder.isPresent()
            ? LeaseLock.holderJson(lease)
            : LeaseLock.held(lease) ? HELD_JSON : firstInLineJson(pruned, info.id());
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
        // Full: a place a gone replica left behind makes room first.
        pruned = places.roomFor(pruned).orElse(pruned);
      }
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
      next = pruned.append(ticket(info, who(info, caller), owner, now));
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

  /** Why a free lock is not granted while the queue is held. */
  private static final String HELD_JSON =
      new LockInfo(
              "",
              "",
              "the queue is held (spec.queue.hold): nothing new is admitted until it is let go;"
                  + " waiting keeps your place",
              "leasehold",
              "",
              "",
              "")
          .toJson();

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
    var all = new HashMap<>(local);
    all.put(info.id(), new Waiting(info, caller));
    return all;
  }

  /** A place in line on this replica for {@code info}'s client: a plan's shares the lock. */
  private Ticket ticket(LockInfo info, String who, String owner, Instant now) {
    Ticket t = Ticket.client(info.id(), who, owner, replica, now);
    return PlanHolds.isPlan(info) ? t.asPlan() : t;
  }

  private static String who(LockInfo info, Caller caller) {
    String who = info.who() == null || info.who().isBlank() ? caller.describe() : info.who();
    return who.length() <= 64 ? who : who.substring(0, 64);
  }

  /**
   * Grants the free lock to the first in line if that is a connected request of this replica.
   * Called whenever the Lease changes and when a local request arrives, leaves or times out.
   */
  Optional<Granted> serve(StateNames names, Map<String, Waiting> local) {
    for (int round = 0; ; round++) {
      Optional<Granted> granted = serveOnce(names, local);
      if (granted.isPresent() && granted.get() == SERVE_BACK_FIRST && round < LeaseStore.ATTEMPTS) {
        continue;
      }
      return granted.filter(g -> g != SERVE_BACK_FIRST);
    }
  }

  private Optional<Granted> serveOnce(StateNames names, Map<String, Waiting> local) {
    Lease[] written = new Lease[1];
    Optional<Granted> granted =
        store.transition(names, lease -> decideServe(names, lease, local), written);
    return granted.map(
        g -> g == SERVE_BACK_FIRST ? g : new Granted(g.lockId(), written[0], g.tookOver()));
  }

  private Step<Optional<Granted>> decideServe(
      StateNames names, Lease lease, Map<String, Waiting> local) {
    if (store.closed(names).isPresent()) {
      // Nobody is granted the lock of a state being deleted; its waiters are refused.
      return Step.answer(Optional.empty());
    }
    Instant now = clock.instant();
    Line line = LeaseLock.line(lease);
    Line pruned = tidy(places.kept(line, now), local, now);
    // Requests waiting here whose places were lost (the line was edited by hand, or cleared by a
    // client that rewrote the Lease's annotations) join again at the back.
    for (Waiting w : local.values()) {
      if (pruned.find(w.info().id()).isEmpty()
          && pruned.clients() < Line.MAX_CLIENTS
          && !Cancels.cancelledClient(lease, w.info().id(), now)) {
        Line joined =
            pruned.append(
                ticket(
                    w.info(),
                    who(w.info(), w.caller()),
                    Caller.digest(w.caller().identity()),
                    now));
        if (LeaseSize.lineFits(lease, joined)) {
          pruned = joined;
        }
      }
    }
    Optional<Holder> holder = Holder.of(lease, now);
    boolean plansHold = !PlanHolds.of(lease).isEmpty();
    Lease tidied = pruned.equals(line) ? null : LeaseLock.withLine(lease, pruned);
    if (!plansHold
        && holder.isPresent()
        && !takeOvers.mayTakeOver(names.namespace(), holder.get())) {
      return new Step<>(tidied, Optional.empty());
    }
    List<LockCore.Granted> grants =
        core
            .sharing(store.maxParallelPlans(names))
            .step(
                CoreView.of(lease, pruned, now, replica, local.keySet(), false),
                new LockCore.Tick(),
                now)
            .effects()
            .stream()
            .filter(e -> e instanceof LockCore.Granted)
            .map(LockCore.Granted.class::cast)
            .toList();
    // Plans granted together may be on several replicas: this one serves its own.
    Optional<LockCore.Granted> first =
        grants.stream()
            .filter(g -> replica.equals(g.replica()) && local.containsKey(g.id()))
            .findFirst()
            .or(() -> grants.stream().findFirst());
    if (first.isPresent()
        && first.get().kind() == LockCore.Kind.CLIENT
        && !replica.equals(first.get().replica())
        && !local.isEmpty()) {
      // Another replica's turn, with clients waiting here: if it does not take the lock (it may
      // have died just now), it is asked whether it still runs.
      liveness.suspect(first.get().replica());
    }
    if (first.isEmpty()
        || first.get().kind() != LockCore.Kind.CLIENT
        || !replica.equals(first.get().replica())
        || !local.containsKey(first.get().id())) {
      return new Step<>(tidied, Optional.empty());
    }
    Waiting w = local.get(first.get().id());
    if (line.find(w.info().id()).map(t -> t.gone() != null).orElse(false)) {
      // Its place said it had left: taken back first, granted in the next write.
      return new Step<>(tidied, Optional.of(SERVE_BACK_FIRST));
    }
    Optional<Lease> held = heldBy(lease, w.info(), w.caller(), pruned.without(w.info().id()));
    if (held.isEmpty()) {
      return new Step<>(tidied, Optional.empty());
    }
    Optional<Holder> taken = plansHold ? Optional.empty() : holder;
    return new Step<>(
        LeaseLock.tookOver(held.get(), taken),
        Optional.of(new Granted(w.info().id(), null, taken.isPresent())));
  }

  /**
   * Client {@code id}'s request on this replica ended (answered, or its connection closed): it
   * keeps its place for the grace period but may not be granted the lock until it comes back.
   */
  void left(StateNames names, String id) {
    store.freshTransition(
        names,
        lease -> {
          Line line = LeaseLock.line(lease);
          Optional<Ticket> t = line.find(id);
          if (t.isEmpty() || t.get().gone() != null || !replica.equals(t.get().replica())) {
            return Step.answer(Boolean.FALSE);
          }
          Line next = places.kept(line.replace(t.get().goneAt(clock.instant())), clock.instant());
          return new Step<>(LeaseLock.withLine(lease, next), Boolean.TRUE);
        });
  }

  /** Removes from line the clients whose grace period ran out. */
  void prune(StateNames names) {
    store.freshTransition(
        names,
        lease -> {
          Line line = LeaseLock.line(lease);
          Line pruned = places.kept(line, clock.instant());
          return pruned.equals(line)
              ? Step.answer(Boolean.FALSE)
              : new Step<>(LeaseLock.withLine(lease, pruned), Boolean.TRUE);
        });
  }

  /**
   * Undoes a grant whose answer could not be delivered (the client went away in between): the lock
   * is released if it is still held by that lock ID for that identity. Returns whether it was.
   */
  boolean undo(StateNames names, Granted granted, Caller caller) {
    return store.freshTransition(
        names,
        lease -> {
          Optional<PlanHolds.Plan> plan = PlanHolds.find(lease, granted.lockId());
          if (plan.isPresent()) {
            return plan.get().ownedBy(caller)
                ? new Step<>(PlanHolds.without(lease, granted.lockId()), Boolean.TRUE)
                : Step.answer(Boolean.FALSE);
          }
          Optional<Holder> h = Holder.of(lease, clock.instant());
          if (h.isEmpty()
              || !h.get().id().equals(granted.lockId())
              || !Ownership.ownedBy(h.get(), caller)) {
            return Step.answer(Boolean.FALSE);
          }
          return new Step<>(LeaseLock.released(lease), Boolean.TRUE);
        });
  }
}
