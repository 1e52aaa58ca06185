package io.leasehold.lock;

import io.leasehold.lock.LockCore.Arrive;
import io.leasehold.lock.LockCore.Event;
import io.leasehold.lock.LockCore.ForceUnlock;
import io.leasehold.lock.LockCore.Granted;
import io.leasehold.lock.LockCore.HangUp;
import io.leasehold.lock.LockCore.Holding;
import io.leasehold.lock.LockCore.JobEnded;
import io.leasehold.lock.LockCore.Kind;
import io.leasehold.lock.LockCore.Mode;
import io.leasehold.lock.LockCore.Outcome;
import io.leasehold.lock.LockCore.Place;
import io.leasehold.lock.LockCore.State;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * The lock's rules, checked after every step of {@link LockCore}, written apart from the core (its
 * own idea of who may take the lock) so that a core that breaks a rule is caught.
 */
final class LockCoreRules {

  private LockCoreRules() {}

  /** Whether {@code p} could take the lock now, as the rules define it. */
  static boolean mayTake(State s, Place p) {
    return switch (p.kind()) {
      case CLIENT -> !s.held() && p.away() == null && s.alive().contains(p.replica());
      case JOB -> !s.held() && !s.closing() && s.leader().map(s.alive()::contains).orElse(false);
      case DELETION -> true;
      case OTHER -> false;
    };
  }

  /** The rules one step broke, in words; empty when it kept them all. */
  static List<String> broken(
      LockCore.Rules rules, State before, Event event, Outcome out, Instant now) {
    List<String> broken = new ArrayList<>();
    State after = out.state();
    long exclusive = after.holders().stream().filter(h -> h.mode() == Mode.EXCLUSIVE).count();
    long shared = after.holders().size() - exclusive;
    if (exclusive > 1) {
      broken.add("two exclusive holders: " + after.holders());
    }
    if (exclusive == 1 && shared > 0) {
      broken.add("a shared holder beside an exclusive one: " + after.holders());
    }
    if (shared > rules.maxShared()) {
      broken.add("more shared holders than " + rules.maxShared() + ": " + after.holders());
    }
    for (var e : out.effects()) {
      if (!(e instanceof Granted g) || before.holder(g.id()).isPresent()) {
        continue;
      }
      if (g.kind() == Kind.CLIENT) {
        boolean arriving =
            event instanceof Arrive a && a.id().equals(g.id()) && a.replica().equals(g.replica());
        boolean connected =
            before
                .place(g.id())
                .map(p -> p.away() == null && !(event instanceof HangUp h && h.id().equals(g.id())))
                .orElse(false);
        if (!arriving && !connected) {
          broken.add("granted to client " + g.id() + " that is not connected");
        }
        if (!after.alive().contains(g.replica())) {
          broken.add("granted to client " + g.id() + " of replica " + g.replica() + " not alive");
        }
      }
      if (g.kind() == Kind.JOB && after.leader().map(after.alive()::contains).orElse(false)) {
        // admitted by a live leader: fine
      } else if (g.kind() == Kind.JOB) {
        broken.add("Job " + g.id() + " admitted with no live leader");
      }
      if (before.closing() && g.kind() != Kind.DELETION) {
        broken.add("granted " + g.id() + " while the state is being deleted");
      }
      if (after.held() && g.kind() != Kind.DELETION) {
        broken.add("granted " + g.id() + " while the queue is held");
      }
      // FIFO: nobody who could take the lock and stood before the granted one still waits.
      int grantedAt = before.position(g.id());
      for (Place p : after.line()) {
        int was = before.position(p.id());
        boolean ahead = was > 0 && (grantedAt == 0 || was < grantedAt);
        if (ahead && mayTake(after, p)) {
          broken.add("granted " + g.id() + " past " + p.id() + ", which could take the lock");
        }
      }
    }
    // Work-conserving: a free lock (or one held by plans with room) never waits for nobody.
    if (after.holders().isEmpty()) {
      after.line().stream()
          .filter(p -> mayTake(after, p))
          .findFirst()
          .ifPresent(p -> broken.add("the lock is free while " + p.id() + " could take it"));
    } else if (exclusive == 0 && shared < rules.maxShared()) {
      for (Place p : after.line()) {
        if (!mayTake(after, p)) {
          continue;
        }
        if (p.mode() == Mode.SHARED) {
          broken.add("shared holders have room while shared " + p.id() + " could join them");
        }
        break;
      }
    }
    // Places of replicas that are gone never stay connected to block anyone.
    for (Place p : after.line()) {
      if (p.kind() == Kind.CLIENT && p.away() == null && !after.alive().contains(p.replica())) {
        broken.add("place " + p.id() + " of replica " + p.replica() + " (not alive) connected");
      }
      if (p.away() != null && !p.away().plus(rules.grace()).isAfter(now)) {
        broken.add("place " + p.id() + " kept past its grace");
      }
    }
    // A Job's lock goes only when the Job ends, or by force.
    for (Holding h : before.holders()) {
      if (h.kind() != Kind.JOB || after.holder(h.id()).isPresent()) {
        continue;
      }
      boolean ended = event instanceof JobEnded j && j.uid().equals(h.id());
      if (!ended && !(event instanceof ForceUnlock)) {
        broken.add("Job " + h.id() + " lost its lock on " + event);
      }
    }
    // Nobody cuts in: the places before a connected client never grow in number.
    for (Place p : before.line()) {
      if (p.kind() != Kind.CLIENT || !mayTake(before, p)) {
        continue;
      }
      int now1 = after.position(p.id());
      if (now1 > before.position(p.id())) {
        broken.add("client " + p.id() + " moved back from " + before.position(p.id()));
      }
    }
    return broken;
  }

  /** Canonical form of a state at {@code now}: equal for states the rules cannot tell apart. */
  static Object key(State s, Instant now, Duration grace) {
    List<Object> line = new ArrayList<>();
    for (Place p : s.line()) {
      line.add(
          List.of(
              p.id(),
              p.mode(),
              Optional.ofNullable(p.replica()).orElse("-"),
              p.away() == null ? "here" : Duration.between(p.away(), now).toSeconds()));
    }
    return List.of(s.holders(), line, s.alive(), s.leader(), s.closing(), s.held());
  }
}
