package io.leasehold.ops;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.classic.spi.IThrowableProxy;
import ch.qos.logback.classic.spi.StackTraceElementProxy;
import ch.qos.logback.core.read.ListAppender;
import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.client.utils.KubernetesSerialization;
import io.leasehold.api.TerraformState;
import io.leasehold.state.StateNames;
import io.leasehold.support.BackendHttp;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.TerraformStates;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.slf4j.LoggerFactory;

/**
 * Nothing from inside a state, a request body or a LockInfo reaches an Event, a status, a log line
 * (at DEBUG too) or an error reply: parser faults are told by position and kind.
 */
class NoSecretLeaksTest {

  private static final String IN_STATE = "pw-in-state-7c1e";
  private static final String IN_BODY = "pw-in-body-2b9d";
  private static final String IN_LOCK = "pw-in-lockinfo-5a0f";

  @Test
  @DisplayName(
      "When a stored state, a POST body and LockInfos carry secrets where they are malformed,"
          + " then no Event, status, log line at DEBUG or reply shows them, and the faults are"
          + " told by position and kind")
  void secretsNeverLeak() throws Exception {
    LoggerContext context = (LoggerContext) LoggerFactory.getILoggerFactory();
    ListAppender<ILoggingEvent> captured = new ListAppender<>();
    captured.setContext(context);
    captured.start();
    Logger root = context.getLogger(Logger.ROOT_LOGGER_NAME);
    Level rootLevel = root.getLevel();
    root.addAppender(captured);
    // As the shipped configuration runs with LEASEHOLD_LOG_LEVEL=DEBUG: everything at DEBUG but
    // the loggers it pins (the embedded API's own request log among them).
    root.setLevel(Level.DEBUG);
    java.util.Map<String, Level> pinned = shippedPins();
    java.util.Map<String, Level> before = new java.util.HashMap<>();
    pinned.forEach(
        (name, level) -> {
          before.put(name, context.getLogger(name).getLevel());
          context.getLogger(name).setLevel(level);
        });
    List<String> replies = new ArrayList<>();
    List<String> events;
    List<String> statuses = new ArrayList<>();
    try (OperatorHarness h = OperatorHarness.start()) {
      BackendHttp backend = new BackendHttp(h.startBackend(64L * 1024 * 1024));
      // A corrupt state: JSON that breaks off into a password.
      StateNames corrupt = new StateNames(NAMESPACE, "leaky", "default");
      String broken =
          "{\"version\":4,\"serial\":3,\"lineage\":\"lin-leak\",\"outputs\":{\"db\":{\"value\":"
              + IN_STATE
              + "}}}";
      for (Secret s : TerraformStates.secrets(corrupt, broken)) {
        h.client().resource(s).create();
      }
      create(h, "leaky");
      create(h, "clean");
      await()
          .atMost(Duration.ofSeconds(30))
          .until(
              () ->
                  h.get("leaky").getStatus() != null
                      && h.get("leaky").getStatus().getConditions().stream()
                          .anyMatch(c -> "StateUnreadable".equals(c.getReason())));
      String message =
          h.get("leaky").getStatus().getConditions().stream()
              .filter(c -> "Degraded".equals(c.getType()))
              .findFirst()
              .orElseThrow()
              .getMessage();
      assertThat(message).containsPattern("not JSON at (byte|character) [0-9]+");

      BackendHttp.Answer get = backend.get(NAMESPACE + "/leaky");
      assertThat(get.status()).isEqualTo(500);
      assertThat(get.body()).containsPattern("at (byte|character) [0-9]+");
      replies.add(get.body());

      // A malformed POST body, and a valid one first so there is a state to guard.
      replies.add(
          backend
              .post(NAMESPACE + "/clean", null, TerraformStates.stateJson(1, "lin-clean", 1))
              .body());
      BackendHttp.Answer post =
          backend.post(
              NAMESPACE + "/clean",
              null,
              "{\"version\":4,\"serial\":2,\"lineage\":\"lin-clean\",\"resources\":[" + IN_BODY);
      assertThat(post.status()).isEqualTo(400);
      assertThat(post.body()).containsPattern("at (byte|character) [0-9]+");
      replies.add(post.body());
      replies.add(
          backend
              .post(
                  NAMESPACE + "/clean",
                  null,
                  "{\"version\":4,\"serial\":2,\"lineage\":\"lin-clean\",\"x\":\"" + IN_BODY)
              .body());

      // LockInfos: malformed, and one with an unknown field.
      replies.add(
          backend
              .send("LOCK", NAMESPACE + "/clean/lock", "{\"ID\":\"l-1\",\"Who\":" + IN_LOCK + "}")
              .body());
      replies.add(
          backend
              .send("UNLOCK", NAMESPACE + "/clean/lock", "{\"ID\":\"l-1\",\"Who\":" + IN_LOCK)
              .body());
      String extra =
          "{\"ID\":\"l-2\",\"Operation\":\"OperationTypeApply\",\"Who\":\"ann@ci\","
              + "\"Secret\":\""
              + IN_LOCK
              + "\"}";
      BackendHttp.Answer locked = backend.send("LOCK", NAMESPACE + "/clean/lock", extra);
      assertThat(locked.status()).isEqualTo(200);
      replies.add(locked.body());
      await()
          .atMost(Duration.ofSeconds(30))
          .until(() -> "ann@ci (apply)".equals(h.status("clean").getHolder()));
      replies.add(backend.send("UNLOCK", NAMESPACE + "/clean/lock", extra).body());
      await()
          .atMost(Duration.ofSeconds(30))
          .until(
              () ->
                  h.client().v1().events().inNamespace(NAMESPACE).list().getItems().stream()
                      .anyMatch(e -> "WriteRefused".equals(e.getReason())));
      await().atMost(Duration.ofSeconds(30)).until(() -> h.status("clean").getHolder() == null);
      events =
          h.client().v1().events().inNamespace(NAMESPACE).list().getItems().stream()
              .map(e -> e.getReason() + ": " + e.getMessage())
              .toList();
      KubernetesSerialization json = new KubernetesSerialization();
      for (String name : List.of("leaky", "clean")) {
        TerraformState s = h.get(name);
        statuses.add(json.asJson(s.getStatus()));
      }
    } finally {
      root.detachAppender(captured);
      root.setLevel(rootLevel);
      before.forEach((name, level) -> context.getLogger(name).setLevel(level));
    }

    List<String> markers = List.of(IN_STATE, IN_BODY, IN_LOCK);
    assertThat(events).isNotEmpty();
    assertThat(events).anyMatch(e -> e.startsWith("StateUnreadable"));
    assertThat(events).anyMatch(e -> e.startsWith("WriteRefused"));
    for (String marker : markers) {
      assertThat(events).as("Events").noneMatch(e -> e.contains(marker));
      assertThat(statuses).as("status").noneMatch(e -> e.contains(marker));
      assertThat(replies).as("replies").noneMatch(e -> e.contains(marker));
    }
    assertThat(captured.list).isNotEmpty();
    for (ILoggingEvent event : captured.list) {
      String line = render(event);
      for (String marker : markers) {
        assertThat(line).as("a log line of " + event.getLoggerName()).doesNotContain(marker);
      }
    }
  }

  /** The loggers the shipped logback.xml sets a level for, whatever LEASEHOLD_LOG_LEVEL says. */
  private static java.util.Map<String, Level> shippedPins() throws Exception {
    var doc =
        javax.xml.parsers.DocumentBuilderFactory.newInstance()
            .newDocumentBuilder()
            .parse(NoSecretLeaksTest.class.getResourceAsStream("/logback.xml"));
    var loggers = doc.getElementsByTagName("logger");
    java.util.Map<String, Level> pins = new java.util.HashMap<>();
    for (int i = 0; i < loggers.getLength(); i++) {
      var e = (org.w3c.dom.Element) loggers.item(i);
      pins.put(e.getAttribute("name"), Level.toLevel(e.getAttribute("level")));
    }
    assertThat(pins).containsKey("io.fabric8.kubernetes.client.server.mock");
    return pins;
  }

  private static void create(OperatorHarness h, String name) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    h.client().resource(s).create();
  }

  /**
   * A log event as an appender would write it: message, its key-value pairs (the audit trail's),
   * then every exception in the chain.
   */
  private static String render(ILoggingEvent event) {
    StringBuilder out = new StringBuilder(event.getFormattedMessage());
    if (event.getKeyValuePairs() != null) {
      event
          .getKeyValuePairs()
          .forEach(kv -> out.append(' ').append(kv.key).append('=').append(kv.value));
    }
    for (IThrowableProxy t = event.getThrowableProxy(); t != null; t = t.getCause()) {
      out.append('\n').append(t.getClassName()).append(": ").append(t.getMessage());
      for (StackTraceElementProxy e : t.getStackTraceElementProxyArray()) {
        out.append("\n\tat ").append(e.getSTEAsString());
      }
    }
    return new String(out.toString().getBytes(StandardCharsets.UTF_8), StandardCharsets.UTF_8);
  }
}
