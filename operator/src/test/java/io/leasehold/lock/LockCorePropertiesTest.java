package io.leasehold.lock;

import static org.assertj.core.api.Assertions.assertThat;

import io.leasehold.lock.LockCore.Arrive;
import io.leasehold.lock.LockCore.Close;
import io.leasehold.lock.LockCore.Event;
import io.leasehold.lock.LockCore.ForceUnlock;
import io.leasehold.lock.LockCore.Granted;
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
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.ForAll;
import net.jqwik.api.From;
import net.jqwik.api.Label;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.Size;

/**
 * Random event sequences over three replicas, five clients (plans and applies, waiting and not),
 * four Jobs, a leader that moves, deaths, force-unlocks, deletion and time, driven through the
 * lock's pure core. After every step the rules of {@link LockCoreRules} hold, and no client that
 * keeps waiting, connected, sees more grants to others than there were places before it.
 */
class LockCorePropertiesTest {

  private static final LockCore.Rules RULES = new LockCore.Rules(Duration.ofSeconds(30), 3, 4);
  private static final LockCore CORE = new LockCore(RULES);
  private static final List<String> REPLICAS = List.of("r1", "r2", "r3");

  /** One random step: the event and how many seconds pass before it. */
  record Step(Event event, int seconds) {}

  @Provide
  Arbitrary<Step> steps() {
    Arbitrary<String> client = Arbitraries.of("a", "b", "c", "d", "e");
    Arbitrary<String> replica = Arbitraries.of(REPLICAS);
    Arbitrary<String> job = Arbitraries.of("j1", "j2", "j3", "j4");
    Arbitrary<Mode> mode = Arbitraries.of(Mode.class);
    Arbitrary<Event> event =
        Arbitraries.frequencyOf(
            List.of(
                Tuple(
                    8,
                    Combinators.combine(client, replica, Arbitraries.of(true, false))
                        .as((c, r, w) -> new Arrive(c, modeOf(c), "owner-" + c, r, w))),
                Tuple(3, Combinators.combine(client, replica).as(HangUp::new)),
                Tuple(1, client.map(Leave::new)),
                Tuple(6, client.map(c -> new Release(c, "owner-" + c))),
                Tuple(1, client.map(c -> new Release(c, "someone-else"))),
                Tuple(3, Combinators.combine(job, mode).as(JobQueued::new)),
                Tuple(3, job.map(JobEnded::new)),
                Tuple(1, replica.map(ReplicaGone::new)),
                Tuple(2, replica.map(ReplicaAlive::new)),
                Tuple(1, replica.optional(0.8).map(Leader::new)),
                Tuple(1, Arbitraries.just(new ForceUnlock(Optional.empty()))),
                Tuple(1, Arbitraries.just((Event) new Close("delete"))),
                Tuple(2, Arbitraries.just((Event) new Tick()))));
    return Combinators.combine(event, Arbitraries.integers().between(0, 20)).as(Step::new);
  }

  private static net.jqwik.api.Tuple.Tuple2<Integer, Arbitrary<Event>> Tuple(
      int weight, Arbitrary<? extends Event> a) {
    return net.jqwik.api.Tuple.of(weight, a.map(e -> (Event) e));
  }

  /** Clients d and e plan (share the lock); the others apply. */
  private static Mode modeOf(String client) {
    return client.equals("d") || client.equals("e") ? Mode.SHARED : Mode.EXCLUSIVE;
  }

  @Property(tries = 4000)
  @Label("Every step of a random history keeps every rule of the lock")
  void everyStepKeepsTheRules(@ForAll @Size(min = 1, max = 160) List<@From("steps") Step> history) {
    State s = State.free(Set.copyOf(REPLICAS), Optional.of("r1"));
    Instant now = Instant.parse("2026-12-07T10:00:00Z");
    // For each client waiting connected: how many places were before it, and grants to others.
    Map<String, int[]> waiting = new HashMap<>();
    List<String> seen = new ArrayList<>();
    for (Step step : history) {
      now = now.plusSeconds(step.seconds());
      Outcome out = CORE.step(s, step.event(), now);
      seen.add(step.event().toString());
      assertThat(LockCoreRules.broken(RULES, s, step.event(), out, now))
          .as("after %s", seen)
          .isEmpty();
      State after = out.state();
      for (var e : out.effects()) {
        if (e instanceof Granted g && s.holder(g.id()).isEmpty()) {
          waiting.remove(g.id());
          waiting.values().forEach(w -> w[1]++);
        }
      }
      waiting
          .entrySet()
          .removeIf(
              w -> after.place(w.getKey()).map(p -> !LockCoreRules.mayTake(after, p)).orElse(true));
      for (Place p : after.line()) {
        if (p.kind() == LockCore.Kind.CLIENT && LockCoreRules.mayTake(after, p)) {
          waiting.computeIfAbsent(p.id(), id -> new int[] {after.position(id) - 1, 0});
        }
      }
      for (var w : waiting.entrySet()) {
        assertThat(w.getValue()[1])
            .as(
                "grants to others while %s waited connected behind %d places, after %s",
                w.getKey(), w.getValue()[0], seen)
            .isLessThanOrEqualTo(w.getValue()[0]);
      }
      s = after;
    }
  }
}
