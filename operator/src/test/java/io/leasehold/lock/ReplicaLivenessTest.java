package io.leasehold.lock;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.sun.net.httpserver.HttpServer;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.api.model.coordination.v1.LeaseBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.embedded.EmbeddedKubernetes;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.ZonedDateTime;
import java.time.temporal.ChronoUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/** Heartbeats: who counts as alive, and what happens to the heartbeats of replicas long gone. */
class ReplicaLivenessTest {

  private static EmbeddedKubernetes api;
  private static KubernetesClient client;
  private static final ReplicaLiveness.Timing FAST =
      new ReplicaLiveness.Timing(Duration.ofMillis(200), Duration.ofSeconds(1));

  @BeforeAll
  static void start() {
    api = EmbeddedKubernetes.start(0);
    client = api.newClient();
  }

  @AfterAll
  static void stop() {
    client.close();
    api.close();
  }

  private static Lease heartbeat(String name, String run, ZonedDateTime renewed) {
    return client
        .resource(
            new LeaseBuilder()
                .withNewMetadata()
                .withName(name)
                .withNamespace("default")
                .addToLabels(ReplicaLiveness.LABEL, "hb-test")
                .endMetadata()
                .withNewSpec()
                .withHolderIdentity(run)
                .withLeaseDurationSeconds(12)
                .withRenewTime(renewed.truncatedTo(ChronoUnit.MICROS))
                .endSpec()
                .build())
        .create();
  }

  @Test
  @DisplayName(
      "A heartbeat that stopped hours ago counts as gone at once and is deleted; a live replica's"
          + " counts as alive while it renews, and as gone once it stops renewing")
  void staleHeartbeatsAreGoneAndTidied() {
    heartbeat("hb-test-replica-old", "old#00000000", ZonedDateTime.now().minusHours(2));
    try (ReplicaLiveness live =
            ReplicaLiveness.heartbeating(client, "default", "hb-test", "live", FAST);
        ReplicaLiveness watcher =
            ReplicaLiveness.heartbeating(client, "default", "hb-test", "watcher", FAST)) {
      assertThat(watcher.alive("old#00000000")).isFalse();
      await()
          .atMost(Duration.ofSeconds(10))
          .until(
              () ->
                  client.leases().inNamespace("default").withName("hb-test-replica-old").get()
                      == null);
      await().atMost(Duration.ofSeconds(10)).until(() -> watcher.alive(live.self()));
      assertThat(live.self()).startsWith("live#");
      live.halt();
      await().atMost(Duration.ofSeconds(10)).until(() -> !watcher.alive(live.self()));
      // Stopped, not gone for an hour: its heartbeat is kept.
      assertThat(client.leases().inNamespace("default").withName("hb-test-replica-live").get())
          .isNotNull();
    }
  }

  /** Heartbeats renewed often, timing out as slowly as by default. */
  private static final ReplicaLiveness.Timing SLOW_TIMEOUT =
      new ReplicaLiveness.Timing(Duration.ofMillis(300), Duration.ofSeconds(30));

  @Test
  @DisplayName(
      "A replica whose backend refuses the connection when asked is gone at once, not after its"
          + " heartbeat times out; one that answers with its own run stays alive")
  void aRefusedProbeMeansGoneNow() throws Exception {
    try (ReplicaLiveness dead =
            ReplicaLiveness.heartbeating(client, "default", "hb-test", "refusing", SLOW_TIMEOUT);
        ReplicaLiveness answering =
            ReplicaLiveness.heartbeating(client, "default", "hb-test", "answering", SLOW_TIMEOUT);
        ReplicaLiveness watcher =
            ReplicaLiveness.heartbeating(client, "default", "hb-test", "asker", SLOW_TIMEOUT);
        ServerSocket closed = new ServerSocket(0, 1, InetAddress.getLoopbackAddress());
        RunServer server = new RunServer(answering.self())) {
      int port = closed.getLocalPort();
      closed.close();
      dead.advertiseAs("http://127.0.0.1:" + port + ReplicaLiveness.PROBE_PATH);
      answering.advertise(server.url());
      AtomicInteger changes = new AtomicInteger();
      watcher.onChange(changes::incrementAndGet);
      await()
          .atMost(Duration.ofSeconds(10))
          .until(() -> watcher.knowsProbe(dead.self()) && watcher.knowsProbe(answering.self()));
      dead.halt();

      watcher.probeNow(answering.self());
      assertThat(server.asked()).isPositive();
      assertThat(watcher.alive(answering.self())).isTrue();

      int before = changes.get();
      watcher.probeNow(dead.self());
      assertThat(watcher.alive(dead.self())).isFalse();
      assertThat(changes.get()).as("listeners told").isGreaterThan(before);
      assertThat(watcher.alive(answering.self())).isTrue();
    }
  }

  @Test
  @DisplayName(
      "A replica that does not answer its probe in time is away until its heartbeat is renewed,"
          + " then alive again; an address that answers with another run means this run ended")
  void aSilentReplicaIsAwayUntilItsHeartbeatMoves() throws Exception {
    try (ReplicaLiveness stalled =
            ReplicaLiveness.heartbeating(client, "default", "hb-test", "stalled", SLOW_TIMEOUT);
        ReplicaLiveness replaced =
            ReplicaLiveness.heartbeating(client, "default", "hb-test", "replaced", SLOW_TIMEOUT);
        ReplicaLiveness watcher =
            ReplicaLiveness.heartbeating(client, "default", "hb-test", "asker2", SLOW_TIMEOUT);
        ServerSocket silent = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
        RunServer other = new RunServer("replaced#ffffffff")) {
      // Accepts connections (as the kernel does for a stopped process) and never answers.
      stalled.advertiseAs("http://127.0.0.1:" + silent.getLocalPort() + ReplicaLiveness.PROBE_PATH);
      replaced.advertiseAs(other.url());
      await()
          .atMost(Duration.ofSeconds(10))
          .until(() -> watcher.knowsProbe(stalled.self()) && watcher.knowsProbe(replaced.self()));

      // Stopped (as by SIGSTOP): it renews nothing while it is asked.
      stalled.halt();
      watcher.probeNow(stalled.self());
      assertThat(watcher.alive(stalled.self())).isFalse();
      // It resumes and renews its heartbeat: alive again.
      client
          .leases()
          .inNamespace("default")
          .withName("hb-test-replica-stalled")
          .edit(
              l -> {
                l.getSpec().setRenewTime(ZonedDateTime.now().truncatedTo(ChronoUnit.MICROS));
                return l;
              });
      await().atMost(Duration.ofSeconds(10)).until(() -> watcher.alive(stalled.self()));

      watcher.probeNow(replaced.self());
      assertThat(watcher.alive(replaced.self())).isFalse();
    }
  }

  @Test
  @DisplayName(
      "A heartbeat that comes to name another run (the process restarted under the same name)"
          + " ends the run it named before at once")
  void aRestartEndsTheRunBefore() {
    try (ReplicaLiveness watcher =
        ReplicaLiveness.heartbeating(client, "default", "hb-test", "asker3", SLOW_TIMEOUT)) {
      heartbeat("hb-test-replica-restarting", "restarting#00000001", ZonedDateTime.now());
      await().atMost(Duration.ofSeconds(10)).until(() -> watcher.alive("restarting#00000001"));
      client
          .leases()
          .inNamespace("default")
          .withName("hb-test-replica-restarting")
          .edit(
              l -> {
                l.getSpec().setHolderIdentity("restarting#00000002");
                return l;
              });
      await().atMost(Duration.ofSeconds(10)).until(() -> watcher.alive("restarting#00000002"));
      assertThat(watcher.alive("restarting#00000001")).isFalse();
    }
  }

  @Test
  @DisplayName(
      "A replica whose probe address refuses while its heartbeat goes on (a wrong POD_IP, a"
          + " NetworkPolicy that rejects) counts as gone once, then its probes are no longer"
          + " trusted: it stays alive while it renews")
  void aRefusingAddressOfALiveReplicaIsDistrusted() throws Exception {
    try (ReplicaLiveness live =
            ReplicaLiveness.heartbeating(client, "default", "hb-test", "misrouted", SLOW_TIMEOUT);
        ReplicaLiveness watcher =
            ReplicaLiveness.heartbeating(client, "default", "hb-test", "asker4", SLOW_TIMEOUT);
        ServerSocket closed = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      int port = closed.getLocalPort();
      closed.close();
      live.advertiseAs("http://127.0.0.1:" + port + ReplicaLiveness.PROBE_PATH);
      await().atMost(Duration.ofSeconds(10)).until(() -> watcher.knowsProbe(live.self()));

      watcher.probeNow(live.self());
      assertThat(watcher.alive(live.self())).isFalse();
      // Its next renewal contradicts the probe.
      await().atMost(Duration.ofSeconds(10)).until(() -> watcher.alive(live.self()));
      assertThat(watcher.distrusts(live.self())).isTrue();
      watcher.probeNow(live.self());
      assertThat(watcher.alive(live.self())).isTrue();
    }
  }

  @Test
  @DisplayName(
      "A replica whose address refused stays gone when one more renewal of its heartbeat arrives"
          + " (sent just before it died); a second renewal shows it runs")
  void oneLateRenewalDoesNotBringADeadReplicaBack() throws Exception {
    try (ReplicaLiveness watcher =
            ReplicaLiveness.heartbeating(client, "default", "hb-test", "asker6", SLOW_TIMEOUT);
        ServerSocket closed = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      int port = closed.getLocalPort();
      closed.close();
      String run = "late#00000001";
      client
          .resource(
              new LeaseBuilder(heartbeat("hb-test-replica-late", run, ZonedDateTime.now()))
                  .editMetadata()
                  .addToAnnotations(
                      ReplicaLiveness.PROBE_ANNOTATION,
                      "http://127.0.0.1:" + port + ReplicaLiveness.PROBE_PATH)
                  .endMetadata()
                  .build())
          .update();
      await().atMost(Duration.ofSeconds(10)).until(() -> watcher.knowsProbe(run));
      watcher.probeNow(run);
      assertThat(watcher.alive(run)).isFalse();

      String renewed = renew("hb-test-replica-late");
      await().atMost(Duration.ofSeconds(10)).until(() -> renewed.equals(watcher.seenVersion(run)));
      assertThat(watcher.alive(run)).as("after one late renewal").isFalse();
      assertThat(watcher.distrusts(run)).isFalse();

      String again = renew("hb-test-replica-late");
      await().atMost(Duration.ofSeconds(10)).until(() -> again.equals(watcher.seenVersion(run)));
      assertThat(watcher.alive(run)).as("after a second renewal").isTrue();
      assertThat(watcher.distrusts(run)).isTrue();
    }
  }

  /** Renews a heartbeat by hand; returns its new version. */
  private static String renew(String name) {
    return client
        .leases()
        .inNamespace("default")
        .withName(name)
        .edit(
            l -> {
              l.getSpec().setRenewTime(ZonedDateTime.now().truncatedTo(ChronoUnit.MICROS));
              return l;
            })
        .getMetadata()
        .getResourceVersion();
  }

  @Test
  @DisplayName(
      "A replica advertises its probe address only once it answers there as itself: a wrong"
          + " address is never put in its heartbeat")
  void onlyAnAddressThatAnswersIsAdvertised() throws Exception {
    try (ReplicaLiveness wrong =
            ReplicaLiveness.heartbeating(client, "default", "hb-test", "wrong-ip", SLOW_TIMEOUT);
        ReplicaLiveness right =
            ReplicaLiveness.heartbeating(client, "default", "hb-test", "right-ip", SLOW_TIMEOUT);
        ReplicaLiveness watcher =
            ReplicaLiveness.heartbeating(client, "default", "hb-test", "asker5", SLOW_TIMEOUT);
        RunServer someoneElse = new RunServer("someone-else#00000000")) {
      RunServer itself = new RunServer(right.self());
      try {
        wrong.advertise(someoneElse.url());
        right.advertise(itself.url());
        await().atMost(Duration.ofSeconds(10)).until(() -> watcher.knowsProbe(right.self()));
        await().atMost(Duration.ofSeconds(10)).until(() -> someoneElse.asked() > 0);
        // Renewed twice since it asked: never with the wrong address.
        String asked = heartbeatVersion("hb-test-replica-wrong-ip");
        await()
            .atMost(Duration.ofSeconds(10))
            .until(() -> !heartbeatVersion("hb-test-replica-wrong-ip").equals(asked));
        String once = heartbeatVersion("hb-test-replica-wrong-ip");
        await()
            .atMost(Duration.ofSeconds(10))
            .until(() -> !heartbeatVersion("hb-test-replica-wrong-ip").equals(once));
        assertThat(
                client
                    .leases()
                    .inNamespace("default")
                    .withName("hb-test-replica-wrong-ip")
                    .get()
                    .getMetadata()
                    .getAnnotations())
            .doesNotContainKey(ReplicaLiveness.PROBE_ANNOTATION);
        assertThat(watcher.alive(wrong.self())).isTrue();
      } finally {
        itself.close();
      }
    }
  }

  @Test
  @DisplayName(
      "A decision judges each replica alive or gone once: a replica found gone between keeping the"
          + " line and deciding who is served (a probe on another thread) keeps its client's turn"
          + " for that decision, which writes its place back unmarked; the next decision marks it"
          + " away and serves the connected client behind it")
  void aReplicaFoundGoneMidDecisionIsNotPassedOverUnmarked() throws Exception {
    try (ReplicaLiveness other =
            ReplicaLiveness.heartbeating(client, "default", "hb-test", "first", SLOW_TIMEOUT);
        ReplicaLiveness here =
            ReplicaLiveness.heartbeating(client, "default", "hb-test", "here", SLOW_TIMEOUT)) {
      other.advertiseAs("http://127.0.0.1:1" + ReplicaLiveness.PROBE_PATH);
      here.probeWith(url -> ReplicaLiveness.Probe.refused("connection refused"));
      await()
          .atMost(Duration.ofSeconds(10))
          .until(() -> here.knowsProbe(other.self()) && here.alive(other.self()));
      java.time.Instant now = java.time.Instant.now();
      Line line =
          Line.of(
              java.util.List.of(
                  Ticket.client("first-id", "first", "o1", other.self(), now.minusSeconds(2)),
                  Ticket.client("here-id", "here", "o2", here.self(), now.minusSeconds(1))));
      Lease free = LeaseLock.unlocked(new io.leasehold.state.StateNames("default", "s", "default"));
      PlaceKeeping places = new PlaceKeeping(Duration.ofSeconds(30), here);
      LockCore core = new LockCore(new LockCore.Rules(Duration.ofSeconds(30), 1, Line.MAX_CLIENTS));

      Line kept = places.kept(line, now);
      assertThat(kept.find("first-id").orElseThrow().gone()).as("alive when kept").isNull();
      here.probeNow(other.self());
      assertThat(here.alive(other.self())).as("gone before the decision").isFalse();
      LockCore.Outcome decided =
          core.step(
              CoreView.of(free, kept, now, here.self(), java.util.Set.of("here-id"), false),
              new LockCore.Arrive("here-id", LockCore.Mode.EXCLUSIVE, "o2", here.self(), true),
              now);
      assertThat(decided.granted("here-id"))
          .as("granted past a place written back as waiting")
          .isEmpty();

      Line next = places.kept(kept, now);
      assertThat(next.find("first-id").orElseThrow().gone()).as("marked away").isEqualTo(now);
      assertThat(
              core.step(
                      CoreView.of(free, next, now, here.self(), java.util.Set.of("here-id"), false),
                      new LockCore.Arrive(
                          "here-id", LockCore.Mode.EXCLUSIVE, "o2", here.self(), true),
                      now)
                  .granted("here-id"))
          .as("served once the gone replica's place is marked away")
          .isPresent();
    }
  }

  private static String heartbeatVersion(String name) {
    return client
        .leases()
        .inNamespace("default")
        .withName(name)
        .get()
        .getMetadata()
        .getResourceVersion();
  }

  /** Answers the probe with a run's name, and counts how often it was asked. */
  private static final class RunServer implements AutoCloseable {
    private final HttpServer server;
    private final AtomicInteger asked = new AtomicInteger();

    RunServer(String run) throws IOException {
      server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
      server.createContext(
          ReplicaLiveness.PROBE_PATH,
          exchange -> {
            asked.incrementAndGet();
            byte[] body = (run + "\n").getBytes(StandardCharsets.UTF_8);
            exchange.sendResponseHeaders(200, body.length);
            exchange.getResponseBody().write(body);
            exchange.close();
          });
      server.start();
    }

    String url() {
      return "http://127.0.0.1:" + server.getAddress().getPort() + ReplicaLiveness.PROBE_PATH;
    }

    int asked() {
      return asked.get();
    }

    @Override
    public void close() {
      server.stop(0);
    }
  }

  @Test
  @DisplayName("A replica alone (no leader election) knows only itself, by its identity")
  void aloneKnowsOnlyItself() {
    ReplicaLiveness alone = ReplicaLiveness.alone("solo");
    assertThat(alone.self()).isEqualTo("solo");
    assertThat(alone.alive("solo")).isTrue();
    assertThat(alone.alive("other")).isFalse();
  }
}
