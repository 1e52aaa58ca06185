package io.leasehold.backend;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.joran.JoranConfigurator;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.OutputStreamAppender;
import ch.qos.logback.core.read.ListAppender;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.leasehold.api.TerraformState;
import io.leasehold.lock.LockInfo;
import io.leasehold.operator.TerraformStateReconciler;
import io.leasehold.ops.AuditLog;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.RunnerJobFixtures;
import io.leasehold.support.TerraformStates;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.slf4j.LoggerFactory;
import org.slf4j.event.KeyValuePair;

/**
 * The audit trail on the real operator and backend: one line per lock transition, force-unlock, Job
 * admission, refusal and write, with the state, who and why, and never the state's content.
 */
class AuditTrailTest {

  private static final String SECRET = "S3CR3T-AUDIT-VALUE-5e2a";
  private static final String STATE = "audited";
  private static final String PATH = NAMESPACE + "/" + STATE;

  private static OperatorHarness harness;
  private static BackendClient client;
  private static final ListAppender<ILoggingEvent> captured = new ListAppender<>();
  private static Logger audit;
  private static Level level;
  private static boolean additive;

  @BeforeAll
  static void start() {
    LoggerContext context = (LoggerContext) LoggerFactory.getILoggerFactory();
    captured.setContext(context);
    captured.start();
    audit = context.getLogger(AuditLog.LOGGER);
    level = audit.getLevel();
    additive = audit.isAdditive();
    audit.setLevel(Level.INFO);
    audit.setAdditive(false);
    audit.addAppender(captured);
    harness = OperatorHarness.start();
    client =
        new BackendClient(
            harness.startBackend(
                GUARDED, JobPods.NONE, 64L * 1024 * 1024, StateBackend.Audit.NONE));
    TerraformState s = new TerraformState();
    s.getMetadata().setName(STATE);
    s.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(s).create();
  }

  /**
   * Nobody is authenticated but {@code mallory}, who is refused (401); {@code reader} may only
   * read, {@code runner} may do anything but force-unlock; everyone else may do anything.
   */
  private static final Access GUARDED =
      new Access() {
        @Override
        public Requester authenticate(String authorization) {
          Requester who = Access.NONE.authenticate(authorization);
          if (who.user().startsWith("mallory")) {
            throw ReplyException.text(401, "not authenticated");
          }
          return who;
        }

        @Override
        public void authorize(Requester who, Verb verb, String namespace, String name) {
          boolean allowed =
              who.user().startsWith("reader")
                  ? verb == Verb.GET
                  : !who.user().startsWith("runner") || verb != Verb.FORCE_UNLOCK;
          if (!allowed) {
            throw ReplyException.text(403, who.user() + " may not " + verb);
          }
        }
      };

  private static Map<String, String> basic(String user) {
    return Map.of(
        "Authorization",
        "Basic "
            + java.util.Base64.getEncoder()
                .encodeToString((user + ":" + SECRET).getBytes(StandardCharsets.UTF_8)));
  }

  @AfterAll
  static void stop() {
    try {
      harness.close();
    } finally {
      audit.detachAppender(captured);
      audit.setLevel(level);
      audit.setAdditive(additive);
    }
  }

  /** The fields of a captured line, its event first. */
  private static Map<String, String> fields(ILoggingEvent e) {
    Map<String, String> f = new LinkedHashMap<>();
    for (KeyValuePair kv : e.getKeyValuePairs()) {
      f.put(kv.key, String.valueOf(kv.value));
    }
    return f;
  }

  private static List<Map<String, String>> lines() {
    synchronized (captured.list) {
      return captured.list.stream().map(AuditTrailTest::fields).toList();
    }
  }

  /** Waits for the next line, then checks that it is the only one since {@code from}. */
  private static Map<String, String> onlyLineAfter(int from, String event) {
    await()
        .atMost(Duration.ofSeconds(20))
        .pollInterval(Duration.ofMillis(20))
        .until(() -> lines().size() > from);
    List<Map<String, String>> since = lines().subList(from, lines().size());
    assertThat(since).as("the audit lines since the step").hasSize(1);
    Map<String, String> line = since.get(0);
    assertThat(line)
        .containsEntry("event", event)
        .containsEntry("namespace", NAMESPACE)
        .containsEntry("state", STATE);
    return line;
  }

  private static void annotate(String lockId) {
    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName(STATE)
        .edit(
            s -> {
              s.getMetadata()
                  .getAnnotations()
                  .put(TerraformStateReconciler.FORCE_UNLOCK_ANNOTATION, lockId);
              return s;
            });
  }

  @Test
  @DisplayName(
      "Lock, a contested LOCK refused 423, writes and refused writes, unlock, force-unlocks (HTTP"
          + " and annotation, done and refused) and a Job's admission, handoff and release each"
          + " log exactly one audit line with the state, who and why; no line carries the state's"
          + " content; the shipped JSON format writes each as one JSON object")
  void oneLinePerTransition() throws Exception {
    LockInfo alice = BackendClient.lockInfo("lock-alice", "alice@ci");
    int start = lines().size();
    int n = lines().size();
    assertThat(client.lock(PATH, alice, null).status()).isEqualTo(200);
    assertThat(onlyLineAfter(n, "lock-granted"))
        .containsEntry("workspace", "default")
        .containsEntry("lockId", "lock-alice")
        .containsEntry("lockWho", "alice@ci")
        .containsEntry("operation", "OperationTypeApply")
        .containsKeys("who", "replica");

    n = lines().size();
    LockInfo bob = BackendClient.lockInfo("lock-bob", "bob@laptop");
    assertThat(client.lock(PATH, bob, null).status()).isEqualTo(423);
    assertThat(onlyLineAfter(n, "lock-refused"))
        .containsEntry("lockId", "lock-bob")
        .containsEntry("lockWho", "bob@laptop")
        .containsEntry("status", "423")
        .containsEntry("reason", "held");

    n = lines().size();
    String state = TerraformStates.stateJson(1, "lin-audit", 1, SECRET);
    assertThat(client.post(PATH, "lock-alice", state).status()).isEqualTo(200);
    assertThat(onlyLineAfter(n, "state-written"))
        .containsEntry("serial", "1")
        .containsEntry("lineage", "lin-audit")
        .containsEntry("lockId", "lock-alice");

    n = lines().size();
    String other = TerraformStates.stateJson(2, "lin-other", 1, SECRET);
    assertThat(client.post(PATH, "lock-alice", other).status()).isEqualTo(409);
    assertThat(onlyLineAfter(n, "write-refused"))
        .containsEntry("status", "409")
        .containsEntry("reason", "lineage");

    n = lines().size();
    assertThat(client.unlock(PATH, alice).status()).isEqualTo(200);
    assertThat(onlyLineAfter(n, "lock-released"))
        .containsEntry("lockId", "lock-alice")
        .containsEntry("reason", "unlock");

    n = lines().size();
    String stale = TerraformStates.stateJson(2, "lin-audit", 1, SECRET);
    assertThat(client.post(PATH, "lock-alice", stale).status()).isEqualTo(409);
    assertThat(onlyLineAfter(n, "write-refused")).containsEntry("reason", "stale_lock");

    // terraform force-unlock: UNLOCK without a body.
    n = lines().size();
    LockInfo carol = BackendClient.lockInfo("lock-carol", "carol@ci");
    assertThat(client.lock(PATH, carol, null).status()).isEqualTo(200);
    onlyLineAfter(n, "lock-granted");
    n = lines().size();
    assertThat(client.unlock(PATH, null).status()).isEqualTo(200);
    assertThat(onlyLineAfter(n, "force-unlock"))
        .containsEntry("holderLockId", "lock-carol")
        .containsEntry("holder", "carol@ci (apply)")
        .containsKey("reason");

    // The annotation: refused while it names another lock than the holder's, then done.
    n = lines().size();
    LockInfo dave = BackendClient.lockInfo("lock-dave", "dave@ci");
    assertThat(client.lock(PATH, dave, null).status()).isEqualTo(200);
    onlyLineAfter(n, "lock-granted");
    n = lines().size();
    annotate("lock-wrong");
    assertThat(onlyLineAfter(n, "force-unlock-refused"))
        .containsEntry("lockId", "lock-wrong")
        .containsEntry("holderLockId", "lock-dave");
    await()
        .atMost(Duration.ofSeconds(20))
        .until(
            () ->
                harness.get(STATE).getMetadata().getAnnotations() == null
                    || !harness
                        .get(STATE)
                        .getMetadata()
                        .getAnnotations()
                        .containsKey(TerraformStateReconciler.FORCE_UNLOCK_ANNOTATION));
    n = lines().size();
    annotate("lock-dave");
    assertThat(onlyLineAfter(n, "force-unlock"))
        .containsEntry("lockId", "lock-dave")
        .containsEntry("holderLockId", "lock-dave")
        .containsEntry("holder", "dave@ci (apply)");

    // A runner Job is admitted, hands the lock to the next, which releases it when it ends.
    n = lines().size();
    String first =
        RunnerJobFixtures.create(harness.client(), "audited-1", STATE).getMetadata().getUid();
    assertThat(onlyLineAfter(n, "job-admitted"))
        .containsEntry("job", "audited-1")
        .containsEntry("jobUid", first)
        .containsEntry("lockId", "job/audited-1/" + first)
        .containsKey("replica")
        .doesNotContainKey("handoffFromJob");
    await()
        .atMost(Duration.ofSeconds(20))
        .until(
            () -> RunnerJobFixtures.running(RunnerJobFixtures.get(harness.client(), "audited-1")));
    String second =
        RunnerJobFixtures.create(harness.client(), "audited-2", STATE).getMetadata().getUid();
    await()
        .atMost(Duration.ofSeconds(20))
        .until(
            () ->
                harness.status(STATE).getQueued() != null
                    && harness.status(STATE).getQueued() == 1);
    n = lines().size();
    RunnerJobFixtures.finish(harness.client(), "audited-1", true);
    assertThat(onlyLineAfter(n, "job-admitted"))
        .containsEntry("job", "audited-2")
        .containsEntry("jobUid", second)
        .containsEntry("handoffFromJob", "audited-1")
        .containsEntry("handoffFromJobUid", first);
    await()
        .atMost(Duration.ofSeconds(20))
        .until(
            () -> RunnerJobFixtures.running(RunnerJobFixtures.get(harness.client(), "audited-2")));
    n = lines().size();
    RunnerJobFixtures.finish(harness.client(), "audited-2", true);
    assertThat(onlyLineAfter(n, "job-lock-released"))
        .containsEntry("job", "audited-2")
        .containsEntry("jobUid", second)
        .containsEntry("reason", "Job completed");
    // Nothing more comes of it: each transition was told once.
    harness.events(STATE);
    int total = lines().size();

    List<ILoggingEvent> events;
    synchronized (captured.list) {
      events = new ArrayList<>(captured.list);
    }
    assertThat(events).hasSize(total);
    events = events.subList(start, total);
    assertThat(events.stream().map(ILoggingEvent::getFormattedMessage))
        .containsExactly(
            "lock-granted",
            "lock-refused",
            "state-written",
            "write-refused",
            "lock-released",
            "write-refused",
            "lock-granted",
            "force-unlock",
            "lock-granted",
            "force-unlock-refused",
            "force-unlock",
            "job-admitted",
            "job-admitted",
            "job-lock-released");
    for (String line : encoded(events, "json")) {
      assertThat(line).doesNotContain(SECRET);
      assertThat(line.strip()).doesNotContain("\n");
      JsonNode json = new ObjectMapper().readTree(line);
      assertThat(json.get("loggerName").asText()).isEqualTo(AuditLog.LOGGER);
      assertThat(json.get("level").asText()).isEqualTo("INFO");
      Map<String, String> kvp = new LinkedHashMap<>();
      json.get("kvpList")
          .forEach(
              o -> o.fields().forEachRemaining(f -> kvp.put(f.getKey(), f.getValue().asText())));
      assertThat(kvp.get("event")).isEqualTo(json.get("formattedMessage").asText());
      assertThat(kvp).containsEntry("namespace", NAMESPACE).containsEntry("state", STATE);
    }
    List<String> text = encoded(events, "text");
    assertThat(text).allSatisfy(l -> assertThat(l).doesNotContain(SECRET));
    assertThat(text.get(0))
        .contains("leasehold.audit")
        .contains("event=\"lock-granted\"")
        .contains("state=\"" + STATE + "\"")
        .contains("lockId=\"lock-alice\"");
  }

  @Test
  @DisplayName(
      "A request refused before it reaches the lock (not authenticated, not allowed) and a"
          + " force-unlock without the permission each log one audit line saying so; the"
          + " credentials never appear")
  void refusedAccessIsAudited() throws Exception {
    int n = lines().size();
    assertThat(client.send("GET", PATH, null, basic("mallory")).status()).isEqualTo(401);
    assertThat(onlyLineAfter(n, "access-refused"))
        .containsEntry("status", "401")
        .containsEntry("reason", "not authenticated");

    n = lines().size();
    LockInfo reader = BackendClient.lockInfo("lock-reader", "reader@ci");
    assertThat(client.send("LOCK", PATH + "/lock", reader.toJson(), basic("reader")).status())
        .isEqualTo(403);
    assertThat(onlyLineAfter(n, "access-refused"))
        .containsEntry("who", "reader (unauthenticated)")
        .containsEntry("status", "403")
        .containsEntry("reason", "may not update");

    n = lines().size();
    LockInfo held = BackendClient.lockInfo("lock-held", "holder@ci");
    assertThat(client.lock(PATH, held, null).status()).isEqualTo(200);
    onlyLineAfter(n, "lock-granted");
    n = lines().size();
    assertThat(client.send("UNLOCK", PATH + "/lock", null, basic("runner")).status())
        .isEqualTo(403);
    assertThat(onlyLineAfter(n, "force-unlock-refused"))
        .containsEntry("who", "runner (unauthenticated)")
        .containsEntry("status", "403")
        .containsEntry("reason", "may not force-unlock");
    n = lines().size();
    assertThat(client.unlock(PATH, held).status()).isEqualTo(200);
    onlyLineAfter(n, "lock-released");
    synchronized (captured.list) {
      assertThat(encoded(captured.list, "json")).noneMatch(l -> l.contains(SECRET));
    }
  }

  /** Each event as the shipped logging configuration writes it in {@code format}. */
  private static List<String> encoded(List<ILoggingEvent> events, String format) throws Exception {
    LoggerContext context = new LoggerContext();
    context.setMDCAdapter(new ch.qos.logback.classic.util.LogbackMDCAdapter());
    context.putProperty("LEASEHOLD_LOG_FORMAT", format);
    try {
      JoranConfigurator configurator = new JoranConfigurator();
      configurator.setContext(context);
      configurator.doConfigure(AuditTrailTest.class.getResource("/logback.xml"));
      @SuppressWarnings("unchecked")
      var appender =
          (OutputStreamAppender<ILoggingEvent>)
              context.getLogger(Logger.ROOT_LOGGER_NAME).getAppender(format);
      List<String> out = new ArrayList<>();
      for (ILoggingEvent e : events) {
        String line = new String(appender.getEncoder().encode(e), StandardCharsets.UTF_8);
        assertThat(line).endsWith("\n");
        assertThat(line.substring(0, line.length() - 1)).doesNotContain("\n");
        out.add(line);
      }
      return out;
    } finally {
      context.stop();
    }
  }
}
