package io.leasehold.ops;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.joran.JoranConfigurator;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.read.ListAppender;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.leasehold.api.TerraformState;
import io.leasehold.backend.BackendClientAccess;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.TerraformStates;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.List;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.slf4j.LoggerFactory;

class LoggingTest {

  @Test
  @DisplayName(
      "No log line and no Event carries a state body or a token, even at DEBUG, through writes,"
          + " refusals and locks")
  void logsNeverCarryStateOrTokens() throws Exception {
    String marker = "S3CR3T-STATE-VALUE-7f1c";
    String token = "eyJhbGciOiJSUzI1NiJ9.token-body-4b2d";
    LoggerContext context = (LoggerContext) LoggerFactory.getILoggerFactory();
    ListAppender<ILoggingEvent> captured = new ListAppender<>();
    captured.setContext(context);
    captured.start();
    Logger root = context.getLogger(Logger.ROOT_LOGGER_NAME);
    List<String> loud =
        List.of(
            "io.leasehold", "io.javaoperatorsdk", "io.fabric8.kubernetes.client.dsl", "io.vertx");
    root.addAppender(captured);
    java.util.Map<String, Level> levels = new java.util.HashMap<>();
    loud.forEach(n -> levels.put(n, context.getLogger(n).getLevel()));
    loud.forEach(n -> context.getLogger(n).setLevel(Level.DEBUG));
    try (OperatorHarness h = OperatorHarness.start()) {
      var backend = new BackendClientAccess(h.startBackend(64L * 1024 * 1024));
      TerraformState s = new TerraformState();
      s.getMetadata().setName("quiet");
      s.getMetadata().setNamespace(NAMESPACE);
      h.client().resource(s).create();
      String state = NAMESPACE + "/quiet";
      String body = TerraformStates.stateJson(1, "lin-q", 1, marker);
      String auth =
          "Basic "
              + Base64.getEncoder()
                  .encodeToString(("runner:" + token).getBytes(StandardCharsets.UTF_8));
      HttpClient http = HttpClient.newHttpClient();
      for (String json :
          List.of(
              body, TerraformStates.stateJson(1, "lin-other", 1, marker), "not json " + marker)) {
        http.send(
            HttpRequest.newBuilder(URI.create(h.startedBackendUrl() + state))
                .header("Authorization", auth)
                .POST(HttpRequest.BodyPublishers.ofString(json))
                .build(),
            HttpResponse.BodyHandlers.ofString());
      }
      backend.lock(state, BackendClientAccess.lockInfo("l-1", "x@y"), null);
      backend.post(state, null, TerraformStates.stateJson(2, "lin-q", 1, marker));
      Thread.sleep(1500);
      List<String> events =
          h.client().v1().events().inNamespace(NAMESPACE).list().getItems().stream()
              .map(e -> e.getMessage())
              .toList();
      assertThat(events).isNotEmpty();
      assertThat(events).noneMatch(e -> e.contains(marker) || e.contains(token));
    } finally {
      root.detachAppender(captured);
      // As configured before, so that later tests in this JVM log as configured.
      loud.forEach(n -> context.getLogger(n).setLevel(levels.get(n)));
    }
    assertThat(captured.list).isNotEmpty();
    for (ILoggingEvent event : captured.list) {
      String line =
          event.getFormattedMessage()
              + (event.getThrowableProxy() == null ? "" : event.getThrowableProxy().getMessage());
      assertThat(line).doesNotContain(marker).doesNotContain(token);
    }
  }

  @Test
  @DisplayName("LEASEHOLD_LOG_FORMAT=json makes the shipped logging configuration write JSON lines")
  void jsonLogFormat() throws Exception {
    LoggerContext context = new LoggerContext();
    context.setMDCAdapter(new ch.qos.logback.classic.util.LogbackMDCAdapter());
    context.putProperty("LEASEHOLD_LOG_FORMAT", "json");
    String line;
    try {
      JoranConfigurator configurator = new JoranConfigurator();
      configurator.setContext(context);
      configurator.doConfigure(LoggingTest.class.getResource("/logback.xml"));
      Logger root = context.getLogger(Logger.ROOT_LOGGER_NAME);
      @SuppressWarnings("unchecked")
      var appender =
          (ch.qos.logback.core.OutputStreamAppender<ILoggingEvent>) root.getAppender("json");
      assertThat(appender).as("the root logger writes through the json appender").isNotNull();
      var event =
          new ch.qos.logback.classic.spi.LoggingEvent(
              Logger.class.getName(),
              context.getLogger("io.leasehold.test"),
              Level.INFO,
              "lock {} released",
              null,
              new Object[] {"abc"});
      line = new String(appender.getEncoder().encode(event), StandardCharsets.UTF_8).trim();
    } finally {
      context.stop();
    }
    var json = new ObjectMapper().readTree(line);
    assertThat(json.get("level").asText()).isEqualTo("INFO");
    assertThat(json.get("formattedMessage").asText()).isEqualTo("lock abc released");
  }
}
