package io.leasehold.lock;

import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;

/**
 * The lock's decision core: who holds a state's lock and who gets it next, as a pure function from
 * (state, event, time) to (new state, effects). No I/O, no clock, no threads: the drivers around it
 * (the HTTP waiters, Job admission, the reconciler's deletion, renewals) read the Lease into a
 * {@link State}, apply one {@link Event}, write the new state back in one conditional write and
 * carry out the {@link Effect}s.
 *
 * <p>The rules, each checked after every step by the property and exhaustive tests:
 *
 * <ul>
 *   <li>Exclusive holders hold alone; shared holders (plans) hold beside each other, up to {@link
 *       Rules#maxShared()}.
 *   <li>The line is served in order of arrival. A place is <em>eligible</em> when it can take the
 *       lock now: a client whose request is connected on a replica that is alive, or a Job while a
 *       live replica leads (the leader admits Jobs). Places that are not eligible keep their place
 *       but never make the lock wait: the lock goes to the first eligible place.
 *   <li>Work-conserving: after every step, a free lock has no eligible place in line, and shared
 *       holders have no eligible shared place before the first eligible exclusive one.
 *   <li>FIFO-fair: a shared place behind an eligible exclusive place waits behind it, so neither
 *       plans nor applies starve.
 *   <li>Tickets of replicas that are not alive are dropped in the same step, whether or not anyone
 *       waits; tickets of clients that left are dropped once their grace period has run out.
 *   <li>A Job's lock is released only when that Job ends (or by an explicit force-unlock); time
 *       alone never takes it away.
 *   <li>While the state is being deleted nobody new is granted; the deletion takes the lock once it
 *       is free.
 * </ul>
 */
public class LockCore {

  /** How a holder holds the lock. */
  public enum Mode {
    /** An apply: holds the lock alone. */
    EXCLUSIVE,
    /** A plan: holds it beside other plans, never beside an apply. */
    SHARED
  }

  /** What holds or waits. */
  public enum Kind {
    /** A request to the HTTP backend, served by one replica. */
    CLIENT,
    /** A runner Job, admitted by the leader. */
    JOB,
    /** A holder leasehold did not grant (stock Terraform, a hand-written Lease). */
    OTHER,
    /** The deletion of the state. */
    DELETION
  }

  /** One holder of the lock. */
  public record Holding(String id, Kind kind, Mode mode, String owner) {
    public static Holding client(String id, Mode mode, String owner) {
      return new Holding(id, Kind.CLIENT, mode, owner);
    }

    public static Holding job(String uid, Mode mode) {
      return new Holding(uid, Kind.JOB, mode, null);
    }
  }

  /**
   * One place in line.
   *
   * @param replica for a client, the replica holding its request
   * @param away for a client, when its request ended without the lock: the place is kept for the
   *     grace period but is not eligible until the client comes back
   */
  public record Place(String id, Kind kind, Mode mode, String owner, String replica, Instant away) {
    public static Place client(String id, Mode mode, String owner, String replica) {
      return new Place(id, Kind.CLIENT, mode, owner, replica, null);
    }

    public static Place job(String uid, Mode mode) {
      return new Place(uid, Kind.JOB, mode, null, null, null);
    }

    Place awayAt(Instant at) {
      return new Place(id, kind, mode, owner, replica, at);
    }
  }

  /**
   * The lock as every replica sees it.
   *
   * @param holders who holds the lock (empty: free)
   * @param line who waits, in order of arrival
   * @param alive the replicas that are alive
   * @param leader the replica that admits Jobs, if any
   * @param closing the state is being deleted: nobody new is granted
   * @param held the queue is held (spec.queue.hold): nobody new is granted but the state's
   *     deletion; those in line keep their places
   */
  public record State(
      List<Holding> holders,
      List<Place> line,
      Set<String> alive,
      Optional<String> leader,
      boolean closing,
      boolean held) {
    public State {
      holders = List.copyOf(holders);
      line = List.copyOf(line);
      alive = Set.copyOf(alive);
    }

    public static State free(Set<String> alive, Optional<String> leader) {
      return new State(List.of(), List.of(), alive, leader, false, false);
    }

    public Optional<Holding> holder(String id) {
      return holders.stream().filter(h -> h.id().equals(id)).findFirst();
    }

    public Optional<Place> place(String id) {
      return line.stream().filter(p -> p.id().equals(id)).findFirst();
    }

    /** 1-based place of {@code id} in line, 0 when not in line. */
    public int position(String id) {
      for (int i = 0; i < line.size(); i++) {
        if (line.get(i).id().equals(id)) {
          return i + 1;
        }
      }
      return 0;
    }

    State with(List<Holding> h, List<Place> l) {
      return new State(h, l, alive, leader, closing, held);
    }
  }

  /** Something that happens to the lock. */
  public sealed interface Event
      permits Arrive,
          HangUp,
          Leave,
          Release,
          ForceUnlock,
          JobQueued,
          JobEnded,
          ReplicaAlive,
          ReplicaGone,
          Leader,
          Close,
          Tick,
          Hold {}

  /**
   * A client asks for the lock through {@code replica}. With {@code waits} its request stays open
   * and it keeps a connected place in line; without, it is answered at once and keeps a place that
   * is away until it asks again.
   */
  public record Arrive(String id, Mode mode, String owner, String replica, boolean waits)
      implements Event {}

  /** A waiting client's request ended without the lock (timed out or disconnected). */
  public record HangUp(String id, String replica) implements Event {}

  /** A client gives up its place (cancelled). */
  public record Leave(String id) implements Event {}

  /** The holder {@code id} releases the lock; {@code owner} must match a client's. */
  public record Release(String id, String owner) implements Event {}

  /** The lock is released whoever holds it (the holder {@code expectedId}, when given). */
  public record ForceUnlock(Optional<String> expectedId) implements Event {}

  /** A runner Job waits for the lock. */
  public record JobQueued(String uid, Mode mode) implements Event {}

  /** A runner Job ended (completed, failed, deleted, evicted): its lock or place goes. */
  public record JobEnded(String uid) implements Event {}

  public record ReplicaAlive(String replica) implements Event {}

  public record ReplicaGone(String replica) implements Event {}

  /** Who leads now (empty: nobody). */
  public record Leader(Optional<String> replica) implements Event {}

  /** The state is being deleted; {@code deletionId} takes the lock once it is free. */
  public record Close(String deletionId) implements Event {}

  /** Time passes. */
  public record Tick() implements Event {}

  /** The queue is held (nobody new is granted the lock but the state's deletion) or let go. */
  public record Hold(boolean held) implements Event {}

  /** What the drivers carry out after a step. */
  public sealed interface Effect permits Granted, Waits, Refused, Released, Dropped {}

  /** {@code id} now holds the lock: a client's replica answers it, the leader admits a Job. */
  public record Granted(String id, Kind kind, Mode mode, String replica) implements Effect {}

  /** The arriving client {@code id} waits at {@code position} (it holds nothing). */
  public record Waits(String id, int position) implements Effect {}

  /** The arriving client {@code id} is refused. */
  public record Refused(String id, Refusal reason) implements Effect {}

  /** Holder {@code id} no longer holds the lock, and why. */
  public record Released(String id, Kind kind, Why why) implements Effect {}

  /** The place of {@code id} was dropped from line, and why. */
  public record Dropped(String id, Why why) implements Effect {}

  public enum Refusal {
    /** The lock ID is held or in line for another identity. */
    NOT_OWNER,
    /** The state is being deleted. */
    DELETING,
    /** The line has no room for another client, and the lock cannot be granted now. */
    LINE_FULL
  }

  public enum Why {
    RELEASED,
    FORCED,
    JOB_ENDED,
    LEFT,
    GRACE_OVER,
    DELETING
  }

  /** The result of one step. */
  public record Outcome(State state, List<Effect> effects) {
    public Optional<Granted> granted(String id) {
      return effects.stream()
          .filter(e -> e instanceof Granted g && g.id().equals(id))
          .map(Granted.class::cast)
          .findFirst();
    }

    /** The answer for the arriving client {@code id}: granted, waits or refused. */
    public Optional<Effect> answer(String id) {
      return effects.stream()
          .filter(
              e ->
                  (e instanceof Granted g && g.id().equals(id))
                      || (e instanceof Waits w && w.id().equals(id))
                      || (e instanceof Refused r && r.id().equals(id)))
          .findFirst();
    }
  }

  /**
   * @param grace how long a client that left keeps its place
   * @param maxShared how many shared holders at once
   * @param maxClients how many client places the line keeps
   */
  public record Rules(Duration grace, int maxShared, int maxClients) {
    public static final Rules DEFAULTS = new Rules(Duration.ofSeconds(30), 4, Line.MAX_CLIENTS);
  }

  private final Rules rules;

  public LockCore(Rules rules) {
    this.rules = rules;
  }

  public Rules rules() {
    return rules;
  }

  /** This core with at most {@code maxShared} shared holders at once (a state's own setting). */
  public LockCore sharing(int maxShared) {
    return maxShared == rules.maxShared()
        ? this
        : new LockCore(new Rules(rules.grace(), maxShared, rules.maxClients()));
  }

  /** One step: {@code event} happens to {@code state} at {@code now}. */
  public Outcome step(State state, Event event, Instant now) {
    List<Effect> effects = new ArrayList<>();
    State next = apply(state, event, now, effects);
    next = serve(next, now, effects);
    if (event instanceof Arrive a) {
      boolean answered =
          effects.stream()
              .anyMatch(
                  e ->
                      (e instanceof Granted g && g.id().equals(a.id()))
                          || (e instanceof Refused r && r.id().equals(a.id())));
      if (!answered) {
        if (!a.waits()) {
          // Answered at once: its place is kept, away, and the lock may go past it now.
          next = serve(markAway(next, a.id(), now), now, effects);
        }
        effects.add(new Waits(a.id(), next.position(a.id())));
      }
    }
    return new Outcome(next, List.copyOf(effects));
  }

  private State apply(State s, Event event, Instant now, List<Effect> effects) {
    if (event instanceof Arrive a) {
      return arrive(s, a, now, effects);
    }
    if (event instanceof Hold h) {
      return new State(s.holders(), s.line(), s.alive(), s.leader(), s.closing(), h.held());
    }
    if (event instanceof HangUp h) {
      Optional<Place> p = s.place(h.id());
      return p.isPresent() && p.get().away() == null && h.replica().equals(p.get().replica())
          ? replace(s, p.get().awayAt(now))
          : s;
    }
    if (event instanceof Leave l) {
      return drop(s, l.id(), Why.LEFT, effects);
    }
    if (event instanceof Release r) {
      return release(s, r, effects);
    }
    if (event instanceof ForceUnlock f) {
      if (f.expectedId().isPresent() && s.holder(f.expectedId().get()).isEmpty()) {
        return s;
      }
      for (Holding h : s.holders()) {
        effects.add(new Released(h.id(), h.kind(), Why.FORCED));
      }
      return s.with(List.of(), s.line());
    }
    if (event instanceof JobQueued j) {
      if (s.holder(j.uid()).isPresent() || s.place(j.uid()).isPresent()) {
        return s;
      }
      return s.with(s.holders(), append(s.line(), Place.job(j.uid(), j.mode())));
    }
    if (event instanceof JobEnded j) {
      State t = s;
      if (s.holder(j.uid()).isPresent()) {
        effects.add(new Released(j.uid(), Kind.JOB, Why.JOB_ENDED));
        t = t.with(without(t.holders(), j.uid()), t.line());
      }
      return drop(t, j.uid(), Why.JOB_ENDED, effects);
    }
    if (event instanceof ReplicaAlive r) {
      Set<String> alive = new LinkedHashSet<>(s.alive());
      alive.add(r.replica());
      return new State(s.holders(), s.line(), alive, s.leader(), s.closing(), s.held());
    }
    if (event instanceof ReplicaGone r) {
      Set<String> alive = new LinkedHashSet<>(s.alive());
      alive.remove(r.replica());
      return new State(s.holders(), s.line(), alive, s.leader(), s.closing(), s.held());
    }
    if (event instanceof Leader l) {
      return new State(s.holders(), s.line(), s.alive(), l.replica(), s.closing(), s.held());
    }
    if (event instanceof Close c) {
      return close(s, c, effects);
    }
    return s; // Tick: time passed; serve() drops what ran out.
  }

  private static State release(State s, Release r, List<Effect> effects) {
    Optional<Holding> h = s.holder(r.id());
    if (h.isEmpty()) {
      return s;
    }
    if (h.get().owner() != null && !h.get().owner().equals(r.owner())) {
      effects.add(new Refused(r.id(), Refusal.NOT_OWNER));
      return s;
    }
    effects.add(new Released(r.id(), h.get().kind(), Why.RELEASED));
    return s.with(without(s.holders(), r.id()), s.line());
  }

  private static State close(State s, Close c, List<Effect> effects) {
    State t = new State(s.holders(), s.line(), s.alive(), s.leader(), true, s.held());
    for (Place p : s.line()) {
      if (p.kind() == Kind.CLIENT) {
        t = drop(t, p.id(), Why.DELETING, effects);
      }
    }
    boolean deleting =
        t.line().stream().anyMatch(p -> p.kind() == Kind.DELETION)
            || t.holders().stream().anyMatch(h -> h.kind() == Kind.DELETION);
    if (deleting) {
      return t;
    }
    return t.with(
        t.holders(),
        prepend(
            t.line(), new Place(c.deletionId(), Kind.DELETION, Mode.EXCLUSIVE, null, null, null)));
  }

  private State arrive(State s, Arrive a, Instant now, List<Effect> effects) {
    Optional<Holding> held = s.holder(a.id());
    if (held.isPresent()) {
      if (held.get().kind() == Kind.CLIENT && a.owner().equals(held.get().owner())) {
        // A retry of a request whose answer was lost: it already holds the lock.
        effects.add(new Granted(a.id(), Kind.CLIENT, held.get().mode(), a.replica()));
      } else {
        effects.add(new Refused(a.id(), Refusal.NOT_OWNER));
      }
      return s;
    }
    Optional<Place> mine = s.place(a.id());
    if (mine.isPresent()
        && (mine.get().kind() != Kind.CLIENT || !a.owner().equals(mine.get().owner()))) {
      effects.add(new Refused(a.id(), Refusal.NOT_OWNER));
      return s;
    }
    if (s.closing()) {
      effects.add(new Refused(a.id(), Refusal.DELETING));
      return drop(s, a.id(), Why.DELETING, effects);
    }
    if (mine.isPresent()) {
      return replace(s, new Place(a.id(), Kind.CLIENT, a.mode(), a.owner(), a.replica(), null));
    }
    Place place = Place.client(a.id(), a.mode(), a.owner(), a.replica());
    long clients = s.line().stream().filter(p -> p.kind() == Kind.CLIENT).count();
    if (clients >= rules.maxClients()) {
      // No room to wait; granted only if it may take the lock right now.
      State with = s.with(s.holders(), append(s.line(), place));
      List<Effect> trial = new ArrayList<>();
      State served = serve(dropExpired(with, now, trial), now, trial);
      if (served.holder(a.id()).isPresent()) {
        return with;
      }
      effects.add(new Refused(a.id(), Refusal.LINE_FULL));
      return s;
    }
    return s.with(s.holders(), append(s.line(), place));
  }

  /**
   * Whether {@code p} can take the lock now. Package-private and overridable so that the tests can
   * prove that a broken rule is found.
   */
  boolean eligible(State s, Place p) {
    switch (p.kind()) {
      case CLIENT:
        return !s.held() && p.away() == null && s.alive().contains(p.replica());
      case JOB:
        return !s.held()
            && !s.closing()
            && s.leader().isPresent()
            && s.alive().contains(s.leader().get());
      case DELETION:
        return true;
      default:
        return false;
    }
  }

  /**
   * Whether the replica holding client place {@code p} is alive; a place of a replica that is not
   * is away. Package-private and overridable so that the tests can prove a broken rule is found.
   */
  boolean replicaAlive(State s, Place p) {
    return s.alive().contains(p.replica());
  }

  /** Drops what may no longer wait, then grants the lock as far as it can go. */
  private State serve(State s, Instant now, List<Effect> effects) {
    State t = dropExpired(s, now, effects);
    List<Holding> holders = new ArrayList<>(t.holders());
    List<Place> line = new ArrayList<>(t.line());
    boolean exclusiveHeld = holders.stream().anyMatch(h -> h.mode() == Mode.EXCLUSIVE);
    if (exclusiveHeld) {
      return t;
    }
    for (int i = 0; i < line.size(); ) {
      Place p = line.get(i);
      if (!eligible(t, p)) {
        i++;
        continue;
      }
      if (p.mode() == Mode.EXCLUSIVE) {
        if (holders.isEmpty()) {
          holders.add(new Holding(p.id(), p.kind(), Mode.EXCLUSIVE, p.owner()));
          line.remove(i);
          effects.add(new Granted(p.id(), p.kind(), Mode.EXCLUSIVE, p.replica()));
        }
        // The first eligible exclusive place: nobody behind it passes it.
        break;
      }
      if (holders.size() >= rules.maxShared()) {
        break;
      }
      holders.add(new Holding(p.id(), p.kind(), Mode.SHARED, p.owner()));
      line.remove(i);
      effects.add(new Granted(p.id(), p.kind(), Mode.SHARED, p.replica()));
    }
    return t.with(holders, line);
  }

  /**
   * Drops the places of clients whose grace ran out, and marks the places of replicas that are not
   * alive as away.
   */
  private State dropExpired(State s, Instant now, List<Effect> effects) {
    State t = s;
    for (Place p : s.line()) {
      if (p.kind() != Kind.CLIENT) {
        continue;
      }
      if (p.away() != null && !p.away().plus(rules.grace()).isAfter(now)) {
        t = drop(t, p.id(), Why.GRACE_OVER, effects);
      } else if (p.away() == null && !replicaAlive(s, p)) {
        // Nobody holds its request any more: away from now on, kept for the grace period (its
        // client may retry on another replica), never eligible.
        t = replace(t, p.awayAt(now));
      }
    }
    return t;
  }

  private static State drop(State s, String id, Why why, List<Effect> effects) {
    if (s.place(id).isEmpty()) {
      return s;
    }
    effects.add(new Dropped(id, why));
    return s.with(s.holders(), s.line().stream().filter(p -> !p.id().equals(id)).toList());
  }

  private static State markAway(State s, String id, Instant now) {
    return s.place(id).filter(p -> p.away() == null).map(p -> replace(s, p.awayAt(now))).orElse(s);
  }

  private static State replace(State s, Place place) {
    return s.with(
        s.holders(), s.line().stream().map(p -> p.id().equals(place.id()) ? place : p).toList());
  }

  private static List<Holding> without(List<Holding> holders, String id) {
    return holders.stream().filter(h -> !h.id().equals(id)).toList();
  }

  private static List<Place> append(List<Place> line, Place p) {
    List<Place> next = new ArrayList<>(line);
    next.add(p);
    return next;
  }

  private static List<Place> prepend(List<Place> line, Place p) {
    List<Place> next = new ArrayList<>();
    next.add(p);
    next.addAll(line);
    return next;
  }
}
