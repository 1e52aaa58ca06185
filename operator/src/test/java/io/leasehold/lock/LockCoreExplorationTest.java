package io.leasehold.lock;

import static org.assertj.core.api.Assertions.assertThat;

import io.leasehold.lock.LockCore.Arrive;
import io.leasehold.lock.LockCore.Close;
import io.leasehold.lock.LockCore.Event;
import io.leasehold.lock.LockCore.ForceUnlock;
import io.leasehold.lock.LockCore.HangUp;
import io.leasehold.lock.LockCore.JobEnded;
import io.leasehold.lock.LockCore.JobQueued;
import io.leasehold.lock.LockCore.Leader;
import io.leasehold.lock.LockCore.Leave;
import io.leasehold.lock.LockCore.Mode;
import io.leasehold.lock.LockCore.Outcome;
import io.leasehold.lock.LockCore.Place;
import io.leasehold.lock.LockCore.Release;
import io.leasehold.lock.LockCore.ReplicaAlive;
import io.leasehold.lock.LockCore.ReplicaGone;
import io.leasehold.lock.LockCore.State;
import io.leasehold.lock.LockCore.Tick;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * Every interleaving of a small world (three clients on two replicas, with plans and applies, two
 * Jobs, a leader that comes and goes, a replica that dies and comes back, force-unlocks, the
 * state's deletion and time passing) explored breadth-first until no event reaches a state not seen
 * before: every reachable state, every event from each, the lock's rules checked after every step.
 * Prints how many steps and distinct states it checked.
 */
class LockCoreExplorationTest {

  private static final Duration GRACE = Duration.ofSeconds(30);
  private static final LockCore.Rules RULES = new LockCore.Rules(GRACE, 2, 3);
  private static final Instant T0 = Instant.parse("2026-12-07T10:00:00Z");

  /** No bound: the exploration ends when no step reaches a state it has not seen. */
  private static final int DEPTH = Integer.MAX_VALUE;

  /** An event, and how far the clock moves before it. */
  private record Move(Event event, Duration after) {
    @Override
    public String toString() {
      return after.isZero() ? event.toString() : "(+" + after.toSeconds() + "s) " + event;
    }
  }

  private static List<Move> alphabet() {
    List<Move> moves = new ArrayList<>();
    String[][] clients = {{"a", "r1", "EXCLUSIVE"}, {"b", "r2", "SHARED"}, {"c", "r1", "SHARED"}};
    for (String[] c : clients) {
      Mode mode = Mode.valueOf(c[2]);
      moves.add(new Move(new Arrive(c[0], mode, "owner-" + c[0], c[1], true), Duration.ZERO));
      moves.add(new Move(new Arrive(c[0], mode, "owner-" + c[0], c[1], false), Duration.ZERO));
      moves.add(new Move(new HangUp(c[0], c[1]), Duration.ZERO));
      moves.add(new Move(new Release(c[0], "owner-" + c[0]), Duration.ZERO));
    }
    moves.add(new Move(new Arrive("b", Mode.SHARED, "owner-b", "r1", true), Duration.ZERO));
    moves.add(new Move(new Release("a", "owner-b"), Duration.ZERO));
    moves.add(new Move(new Leave("c"), Duration.ZERO));
    moves.add(new Move(new JobQueued("j1", Mode.EXCLUSIVE), Duration.ZERO));
    moves.add(new Move(new JobQueued("j2", Mode.SHARED), Duration.ZERO));
    moves.add(new Move(new JobEnded("j1"), Duration.ZERO));
    moves.add(new Move(new JobEnded("j2"), Duration.ZERO));
    moves.add(new Move(new ReplicaGone("r2"), Duration.ZERO));
    moves.add(new Move(new ReplicaAlive("r2"), Duration.ZERO));
    moves.add(new Move(new Leader(Optional.of("r1")), Duration.ZERO));
    moves.add(new Move(new Leader(Optional.of("r2")), Duration.ZERO));
    moves.add(new Move(new Leader(Optional.empty()), Duration.ZERO));
    moves.add(new Move(new ForceUnlock(Optional.empty()), Duration.ZERO));
    moves.add(new Move(new Close("delete"), Duration.ZERO));
    moves.add(new Move(new LockCore.Hold(true), Duration.ZERO));
    moves.add(new Move(new LockCore.Hold(false), Duration.ZERO));
    moves.add(new Move(new Tick(), Duration.ofSeconds(10)));
    moves.add(new Move(new Tick(), GRACE.plusSeconds(1)));
    return moves;
  }

  /** What one exploration found. */
  record Report(
      long sequences, long states, int deepest, List<String> firstBreak, List<Move> path) {}

  static Report explore(LockCore core, int depth) {
    State start = State.free(Set.of("r1", "r2"), Optional.of("r1"));
    record Node(State state, Instant now, int depth, List<Move> path) {}
    Deque<Node> queue = new ArrayDeque<>();
    Set<Object> seen = new HashSet<>();
    queue.add(new Node(start, T0, 0, List.of()));
    seen.add(LockCoreRules.key(start, T0, GRACE));
    List<Move> moves = alphabet();
    long sequences = 0;
    int deepest = 0;
    while (!queue.isEmpty()) {
      Node n = queue.poll();
      if (n.depth() == depth) {
        continue;
      }
      for (Move m : moves) {
        sequences++;
        Instant now = n.now().plus(m.after());
        Outcome out = core.step(n.state(), m.event(), now);
        List<String> broken = LockCoreRules.broken(RULES, n.state(), m.event(), out, now);
        List<Move> path = new ArrayList<>(n.path());
        path.add(m);
        if (!broken.isEmpty()) {
          return new Report(sequences, seen.size(), deepest, broken, path);
        }
        // Time only matters relative to the places that are away: explore from a fixed clock.
        Object key = LockCoreRules.key(out.state(), now, GRACE);
        if (seen.add(key)) {
          queue.add(new Node(rebase(out.state(), now), T0, n.depth() + 1, path));
          deepest = Math.max(deepest, n.depth() + 1);
        }
      }
    }
    return new Report(sequences, seen.size(), deepest, List.of(), List.of());
  }

  /** The same state with its clock moved back to {@link #T0}. */
  private static State rebase(State s, Instant now) {
    Duration shift = Duration.between(T0, now);
    return new State(
        s.holders(),
        s.line().stream()
            .map(
                p ->
                    p.away() == null
                        ? p
                        : new Place(
                            p.id(),
                            p.kind(),
                            p.mode(),
                            p.owner(),
                            p.replica(),
                            p.away().minus(shift)))
            .toList(),
        s.alive(),
        s.leader(),
        s.closing(),
        s.held());
  }

  @Test
  @DisplayName(
      "Every interleaving of three clients, two Jobs, two replicas, a changing leader,"
          + " force-unlocks, deletion and time keeps every rule of the lock")
  void everyInterleavingKeepsTheRules() {
    long started = System.nanoTime();
    Report r = explore(new LockCore(RULES), DEPTH);
    System.out.printf(
        "lock core exploration: every reachable state: %,d steps checked from %,d distinct"
            + " states, the deepest first reached after %d events, %d ms%n",
        r.sequences(), r.states(), r.deepest(), (System.nanoTime() - started) / 1_000_000);
    assertThat(r.firstBreak()).as("broken after %s", r.path()).isEmpty();
    assertThat(r.states())
        .as("the exploration reached a world worth checking")
        .isGreaterThan(10_000);
  }

  @Test
  @DisplayName("A core that keeps a dead replica's clients in line is caught by the exploration")
  void aBrokenRuleIsFound() {
    LockCore broken =
        new LockCore(RULES) {
          @Override
          boolean replicaAlive(State s, Place p) {
            // The broken rule: a client's place outlives its replica.
            return true;
          }
        };
    Report r = explore(broken, DEPTH);
    System.out.printf(
        "broken core: caught after %,d sequences: %s via %s%n",
        r.sequences(), r.firstBreak(), r.path());
    assertThat(r.firstBreak()).isNotEmpty();
  }

  @Test
  @DisplayName("A core that lets a plan join plans past a waiting apply is caught")
  void aPlanJumpingAnApplyIsFound() {
    LockCore broken =
        new LockCore(RULES) {
          @Override
          boolean eligible(State s, Place p) {
            // The broken rule: applies behind running plans are not counted as waiting.
            return p.mode() == Mode.EXCLUSIVE && !s.holders().isEmpty()
                ? false
                : super.eligible(s, p);
          }
        };
    Report r = explore(broken, DEPTH);
    System.out.printf(
        "broken core: caught after %,d sequences: %s via %s%n",
        r.sequences(), r.firstBreak(), r.path());
    assertThat(r.firstBreak()).isNotEmpty();
  }
}
