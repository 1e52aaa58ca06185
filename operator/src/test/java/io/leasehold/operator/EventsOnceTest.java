package io.leasehold.operator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.Event;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.TerraformState;
import io.leasehold.backend.Access;
import io.leasehold.backend.HttpBackend;
import io.leasehold.backend.JobPods;
import io.leasehold.cli.Replica;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.LockService;
import io.leasehold.support.BackendHttp;
import io.leasehold.support.RunnerJobFixtures;
import io.leasehold.support.TerraformStates;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.function.Function;
import java.util.stream.Collectors;
import org.awaitility.core.ConditionFactory;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * Each transition of a state (lock taken, released, handed over; state changed) is one Event: never
 * two, with two replicas serving the backend and the leader replaced half-way.
 */
class EventsOnceTest {

  private static final String NS = "default";
  private static EmbeddedKubernetes api;
  private static KubernetesClient user;
  private static final List<KubernetesClient> clients = new ArrayList<>();
  private static final Replica[] replicas = new Replica[2];
  private static final BackendHttp[] http = new BackendHttp[2];

  @BeforeAll
  static void start() {
    api = EmbeddedKubernetes.start(0);
    user = api.newClient();
    for (int i = 0; i < 2; i++) {
      KubernetesClient client = api.newClient();
      clients.add(client);
      replicas[i] =
          Replica.start(
              client,
              new LeaseholdOperator.Options(Set.of(), Optional.of(NS), "events-" + i)
                  .withElection(
                      new Leadership.Timing(
                          Duration.ofSeconds(3), Duration.ofSeconds(2), Duration.ofMillis(300)))
                  .withLocks(new LockService.Settings(Duration.ofSeconds(30))),
              new Replica.Backend(
                  Access.NONE,
                  JobPods.NONE,
                  new HttpBackend.Config("127.0.0.1", 0, Duration.ofMinutes(5)),
                  1 << 20));
      http[i] = new BackendHttp(replicas[i].url());
    }
  }

  @AfterAll
  static void stop() {
    for (Replica r : replicas) {
      if (r != null) {
        r.close();
      }
    }
    clients.forEach(KubernetesClient::close);
    user.close();
    api.close();
  }

  private static ConditionFactory eventually() {
    return await().atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(20));
  }

  private static TerraformState get(String name) {
    return user.resources(TerraformState.class).inNamespace(NS).withName(name).get();
  }

  private static String lockId(String name) {
    TerraformState s = get(name);
    return s == null || s.getStatus() == null || s.getStatus().getLock() == null
        ? null
        : s.getStatus().getLock().getId();
  }

  private static Long serial(String name) {
    TerraformState s = get(name);
    return s == null || s.getStatus() == null || s.getStatus().getState() == null
        ? null
        : s.getStatus().getState().getSerial();
  }

  private static List<Event> events(String name) {
    return user.v1().events().inNamespace(NS).list().getItems().stream()
        .filter(e -> name.equals(e.getInvolvedObject().getName()))
        .toList();
  }

  /** How many Events of {@code reason} carry each message. */
  private static Map<String, Long> counted(List<Event> events, String reason) {
    return events.stream()
        .filter(e -> reason.equals(e.getReason()))
        .collect(Collectors.groupingBy(Event::getMessage, Collectors.counting()));
  }

  private static int leader() {
    for (int i = 0; i < 2; i++) {
      if (replicas[i] != null && replicas[i].operator().leadership().leading()) {
        return i;
      }
    }
    return -1;
  }

  @Test
  @DisplayName(
      "When locks are taken and released through both replicas, states written and runner Jobs"
          + " handed the lock, with the leader stopped half-way, then every transition the status"
          + " went through is one Event, never two")
  void everyTransitionIsOneEvent() {
    TerraformState s = new TerraformState();
    s.getMetadata().setName("once");
    s.getMetadata().setNamespace(NS);
    user.resource(s).create();
    eventually().until(() -> get("once").getStatus() != null && leader() >= 0);
    String state = NS + "/once";
    int cycles = 16;
    for (int i = 1; i <= cycles; i++) {
      if (i == cycles / 2 + 1) {
        // The leader goes; the other replica takes over and carries on.
        int stopped = leader();
        replicas[stopped].close();
        replicas[stopped] = null;
        int other = 1 - stopped;
        eventually().until(() -> replicas[other].operator().leadership().leading());
      }
      BackendHttp client = http[i % 2] != null && replicas[i % 2] != null ? http[i % 2] : live();
      LockInfo info = BackendHttp.lockInfo("cycle-" + i, "user-" + i + "@ci");
      assertThat(client.lock(state, info, null).status()).isEqualTo(200);
      String id = "cycle-" + i;
      eventually().until(() -> id.equals(lockId("once")));
      long written = i;
      assertThat(client.post(state, id, TerraformStates.stateJson(written, "lin-once", 1)).status())
          .isEqualTo(200);
      eventually().until(() -> Long.valueOf(written).equals(serial("once")));
      assertThat(client.unlock(state, info).status()).isEqualTo(200);
      eventually().until(() -> lockId("once") == null);
    }
    // A burst: transitions faster than the reconciler looks. Some are seen only as their sum
    // (no Event for a lock taken and released between two looks), none twice.
    for (int i = cycles + 1; i <= 3 * cycles; i++) {
      BackendHttp client = live();
      LockInfo info = BackendHttp.lockInfo("cycle-" + i, "user-" + i + "@ci");
      assertThat(client.lock(state, info, null).status()).isEqualTo(200);
      assertThat(
              client
                  .post(state, "cycle-" + i, TerraformStates.stateJson(i, "lin-once", i % 3))
                  .status())
          .isEqualTo(200);
      assertThat(client.unlock(state, info).status()).isEqualTo(200);
    }
    long last = 3L * cycles;
    eventually().until(() -> Long.valueOf(last).equals(serial("once")));
    // Runner Jobs: each taken over from the one before.
    for (int j = 1; j <= 3; j++) {
      RunnerJobFixtures.create(user, "once-" + j, "once");
    }
    for (int j = 1; j <= 3; j++) {
      String name = "once-" + j;
      eventually().until(() -> RunnerJobFixtures.running(RunnerJobFixtures.get(user, name)));
      eventually().until(() -> lockId("once") != null && lockId("once").startsWith("job/" + name));
      RunnerJobFixtures.finish(user, name, true);
    }
    eventually().until(() -> lockId("once") == null);

    eventually()
        .until(
            () ->
                counted(events("once"), "LockReleased").size() >= cycles
                    && counted(events("once"), "StateChanged").size() >= cycles - 2
                    // Hand-overs in quick succession are gathered: the second within 10 s of
                    // the first is written when that window closes.
                    && counted(events("once"), "LockHandedOver").size() >= 2);
    List<Event> events = events("once");
    Map<String, Long> taken = counted(events, "LockTaken");
    Map<String, Long> released = counted(events, "LockReleased");
    Map<String, Long> changed = counted(events, "StateChanged");
    Map<String, Long> handed = counted(events, "LockHandedOver");
    for (int i = 1; i <= cycles; i++) {
      String id = "cycle-" + i;
      assertThat(messagesAbout(taken, "lock " + id + " ")).as("LockTaken of " + id).isEqualTo(1);
      assertThat(messagesAbout(released, "lock " + id + " "))
          .as("LockReleased of " + id)
          .isEqualTo(1);
    }
    for (int i = 2; i <= cycles; i++) {
      assertThat(messagesAbout(changed, "state serial " + (i - 1) + " -> " + i + ","))
          .as("StateChanged to " + i)
          .isEqualTo(1);
    }
    assertThat(handed.values()).as("hand-overs between the Jobs").containsOnly(1L).hasSize(2);
    Function<Map<String, Long>, List<String>> twice =
        m -> m.entrySet().stream().filter(e -> e.getValue() > 1).map(Map.Entry::getKey).toList();
    assertThat(twice.apply(taken)).isEmpty();
    assertThat(twice.apply(released)).isEmpty();
    assertThat(twice.apply(changed)).isEmpty();
  }

  private static BackendHttp live() {
    for (int i = 0; i < 2; i++) {
      if (replicas[i] != null) {
        return http[i];
      }
    }
    throw new IllegalStateException("no replica runs");
  }

  private static long messagesAbout(Map<String, Long> counted, String text) {
    return counted.entrySet().stream()
        .filter(e -> e.getKey().contains(text))
        .mapToLong(Map.Entry::getValue)
        .sum();
  }
}
