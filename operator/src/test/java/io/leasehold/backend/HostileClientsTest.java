package io.leasehold.backend;

import static io.leasehold.backend.BackendClient.lockInfo;
import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.read.ListAppender;
import io.leasehold.api.TerraformState;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.TerraformStates;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.slf4j.LoggerFactory;

/**
 * Clients that send too slowly, too little, too much, or nothing, and clients that go away: none of
 * them holds a thread, is read before it is authenticated, or fills the log.
 */
class HostileClientsTest {

  /** Short timeouts, so that the tests see them act. */
  private static final HttpBackend.Timeouts TIMEOUTS =
      new HttpBackend.Timeouts(
          Duration.ofSeconds(2),
          Duration.ofSeconds(1),
          Duration.ofSeconds(2),
          Duration.ofSeconds(1));

  private static OperatorHarness harness;
  private static BackendClient backend;
  private static URI base;

  /** Authenticates only "Basic ok": anyone else is refused (401) before the body is read. */
  private static final Access ONLY_OK =
      new Access() {
        @Override
        public Requester authenticate(String authorization) {
          if (!"Basic ok".equals(authorization)) {
            throw ReplyException.text(401, "not authenticated");
          }
          return new Requester("ok-user", null, List.of(), Map.of());
        }

        @Override
        public void authorize(Requester who, Verb verb, String namespace, String name) {}
      };

  private static final Map<String, String> OK = Map.of("Authorization", "Basic ok");

  @BeforeAll
  static void start() {
    harness = OperatorHarness.start();
    String url =
        harness.startBackend(
            ONLY_OK, JobPods.NONE, 64L * 1024 * 1024, StateBackend.Audit.NONE, TIMEOUTS);
    backend = new BackendClient(url);
    base = URI.create(url);
    TerraformState s = new TerraformState();
    s.getMetadata().setName("hostile");
    s.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(s).create();
    TerraformState gone = new TerraformState();
    gone.getMetadata().setName("hostile-gone");
    gone.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(gone).create();
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  private static final String STATE = NAMESPACE + "/hostile";

  private static Socket connect() throws IOException {
    Socket socket = new Socket(base.getHost(), base.getPort());
    socket.setSoTimeout(10_000);
    return socket;
  }

  private static void write(Socket socket, String text) throws IOException {
    OutputStream out = socket.getOutputStream();
    out.write(text.getBytes(StandardCharsets.ISO_8859_1));
    out.flush();
  }

  /** Everything the server sends until it closes the connection (or 10 s pass). */
  private static String readAll(Socket socket) throws IOException {
    InputStream in = socket.getInputStream();
    StringBuilder got = new StringBuilder();
    byte[] buffer = new byte[4096];
    try {
      for (int n; (n = in.read(buffer)) >= 0; ) {
        got.append(new String(buffer, 0, n, StandardCharsets.ISO_8859_1));
      }
    } catch (SocketTimeoutException e) {
      got.append("<still open>");
    }
    return got.toString();
  }

  @Test
  @DisplayName(
      "An unauthenticated request is answered 401 without its body being read: no 100 Continue,"
          + " no waiting for the 10 MB it announced, and the connection closed")
  void unauthenticatedBodiesAreNeverRead() throws Exception {
    try (Socket socket = connect()) {
      long started = System.nanoTime();
      write(
          socket,
          "POST /v1/states/"
              + STATE
              + " HTTP/1.1\r\nHost: x\r\nAuthorization: Basic nope\r\n"
              + "Expect: 100-continue\r\nContent-Length: 10000000\r\n\r\n");
      String answer = readAll(socket);
      assertThat(answer).startsWith("HTTP/1.1 401").doesNotContain("100 Continue");
      assertThat(answer).contains("not authenticated").doesNotContain("<still open>");
      assertThat(Duration.ofNanos(System.nanoTime() - started))
          .as("answered without waiting for the body")
          .isLessThan(Duration.ofSeconds(5));
    }
  }

  @Test
  @DisplayName("An authenticated client is told to go on (100 Continue) only after it is checked")
  void continueOnlyAfterAuthentication() throws Exception {
    String state = TerraformStates.stateJson(1, "lin-h", 1);
    try (Socket socket = connect()) {
      write(
          socket,
          "POST /v1/states/"
              + STATE
              + " HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ok\r\nExpect: 100-continue\r\n"
              + "Content-Length: "
              + state.length()
              + "\r\n\r\n");
      byte[] head = new byte[25];
      int n = socket.getInputStream().readNBytes(head, 0, head.length);
      assertThat(new String(head, 0, n, StandardCharsets.ISO_8859_1)).startsWith("HTTP/1.1 100");
      write(socket, state);
      byte[] rest = new byte[200];
      n = socket.getInputStream().read(rest);
      assertThat(new String(rest, 0, n, StandardCharsets.ISO_8859_1)).contains("200 OK");
    }
  }

  @Test
  @DisplayName(
      "A LOCK body that stalls, or trickles in a byte at a time, is ended with 408 and its"
          + " connection closed")
  void slowBodiesAreEnded() throws Exception {
    try (Socket stalled = connect();
        Socket trickling = connect()) {
      String head =
          "LOCK /v1/states/"
              + STATE
              + "/lock HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ok\r\nContent-Length: 500\r\n\r\n{";
      write(stalled, head);
      write(trickling, head);
      long started = System.nanoTime();
      // Faster than the stall timeout, slower than the deadline allows for 500 bytes.
      trickling.setSoTimeout(300);
      StringBuilder trickled = new StringBuilder();
      while (System.nanoTime() - started < Duration.ofSeconds(8).toNanos()) {
        try {
          write(trickling, " ");
        } catch (IOException closed) {
          break;
        }
        try {
          byte[] b = new byte[512];
          int n = trickling.getInputStream().read(b);
          if (n < 0) {
            break;
          }
          trickled.append(new String(b, 0, n, StandardCharsets.ISO_8859_1));
        } catch (SocketTimeoutException e) {
          // Nothing yet.
        }
      }
      assertThat(trickled.toString()).startsWith("HTTP/1.1 408").contains("did not arrive within");
      assertThat(readAll(stalled)).startsWith("HTTP/1.1 408").contains("stalled");
    }
  }

  @Test
  @DisplayName(
      "With 100 connections open and idle, half-sent or stalled, GET, LOCK and UNLOCK are still"
          + " answered")
  void idleConnectionsDoNotStarveOthers() throws Exception {
    List<Socket> idle = new ArrayList<>();
    try {
      for (int i = 0; i < 100; i++) {
        Socket s = connect();
        switch (i % 3) {
          case 0 -> {
            // Connected, says nothing.
          }
          case 1 -> write(s, "GET /v1/states/" + STATE + " HTTP/1.1\r\nHost: x\r\nX-Half: ");
          default ->
              // A state body that stops coming: it must not hold a worker while it waits.
              write(
                  s,
                  "POST /v1/states/"
                      + STATE
                      + " HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ok\r\n"
                      + "Content-Length: 100000\r\n\r\n{\"version\":4,");
        }
        idle.add(s);
      }
      assertThat(backend.send("GET", STATE + "/history", (String) null, OK).status())
          .isEqualTo(200);
      assertThat(
              backend
                  .send("LOCK", STATE + "/lock", lockInfo("busy-1", "b@x").toJson(), OK)
                  .status())
          .isEqualTo(200);
      assertThat(
              backend
                  .send("UNLOCK", STATE + "/lock", lockInfo("busy-1", "b@x").toJson(), OK)
                  .status())
          .isEqualTo(200);
    } finally {
      for (Socket s : idle) {
        s.close();
      }
    }
  }

  @Test
  @DisplayName(
      "A connection that stays idle is closed; a LOCK waiting with ?wait= longer than that keeps"
          + " its connection and gets its answer")
  void idleConnectionsCloseButWaitingLocksStay() throws Exception {
    try (Socket silent = connect()) {
      long started = System.nanoTime();
      assertThat(readAll(silent)).isEmpty();
      assertThat(Duration.ofNanos(System.nanoTime() - started)).isLessThan(Duration.ofSeconds(8));
    }
    assertThat(
            backend.send("LOCK", STATE + "/lock", lockInfo("holds-1", "h@x").toJson(), OK).status())
        .isEqualTo(200);
    try {
      BackendClient.Response waited =
          backend.send("LOCK", STATE + "/lock?wait=4s", lockInfo("waits-1", "w@x").toJson(), OK);
      assertThat(waited.status()).isEqualTo(423);
      assertThat(waited.body()).contains("holds-1");
    } finally {
      backend.send("UNLOCK", STATE + "/lock", lockInfo("holds-1", "h@x").toJson(), OK);
    }
  }

  @Test
  @DisplayName("LOCK and UNLOCK bodies sent with curl's form content type are taken as JSON")
  void lockBodiesOfAnyContentType() throws Exception {
    Map<String, String> form =
        Map.of("Authorization", "Basic ok", "Content-Type", "application/x-www-form-urlencoded");
    BackendClient.Response locked =
        backend.send("LOCK", STATE + "/lock", lockInfo("form-1", "f@x").toJson(), form);
    assertThat(locked.status()).as(locked.body()).isEqualTo(200);
    BackendClient.Response unlocked =
        backend.send("UNLOCK", STATE + "/lock", lockInfo("form-1", "f@x").toJson(), form);
    assertThat(unlocked.status()).as(unlocked.body()).isEqualTo(200);
  }

  @Test
  @DisplayName(
      "Control and bidirectional-override characters in a LockInfo show as '?' in status.holder"
          + " and in Events")
  void holderIsSanitized() throws Exception {
    String who = "evil\u0000\u202egnp.exe";
    assertThat(backend.send("LOCK", STATE + "/lock", lockInfo("bidi-1", who).toJson(), OK).status())
        .isEqualTo(200);
    try {
      await()
          .atMost(Duration.ofSeconds(20))
          .untilAsserted(
              () ->
                  assertThat(harness.status("hostile").getHolder())
                      .isEqualTo("evil??gnp.exe (apply)"));
      assertThat(harness.get("hostile").getStatus().getLock().getWho()).isEqualTo("evil??gnp.exe");
      await()
          .atMost(Duration.ofSeconds(10))
          .until(() -> harness.events("hostile").stream().anyMatch(e -> e.contains("bidi-1")));
      assertThat(harness.events("hostile"))
          .noneMatch(e -> e.contains("\u0000") || e.contains("\u202e"));
    } finally {
      backend.send("UNLOCK", STATE + "/lock", lockInfo("bidi-1", who).toJson(), OK);
    }
  }

  @Test
  @DisplayName(
      "A client that goes away in the middle of its body is one log line, without a stack trace")
  void clientGoneIsOneLine() throws Exception {
    LoggerContext context = (LoggerContext) LoggerFactory.getILoggerFactory();
    ListAppender<ILoggingEvent> captured = new ListAppender<>();
    captured.setContext(context);
    captured.start();
    Logger root = context.getLogger(Logger.ROOT_LOGGER_NAME);
    root.addAppender(captured);
    Logger backendLog = context.getLogger(HttpBackend.class.getName());
    Level level = backendLog.getLevel();
    backendLog.setLevel(Level.INFO);
    try {
      try (Socket socket = connect()) {
        write(
            socket,
            "POST /v1/states/"
                + NAMESPACE
                + "/hostile-gone HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ok\r\n"
                + "Content-Length: 100000\r\n\r\n{\"version\":4,");
        Thread.sleep(300);
      }
      await()
          .atMost(Duration.ofSeconds(10))
          .until(() -> snapshot(captured).stream().anyMatch(HostileClientsTest::gone));
      // And no second line follows.
      await()
          .during(Duration.ofMillis(500))
          .atMost(Duration.ofSeconds(5))
          .until(() -> snapshot(captured).stream().filter(HostileClientsTest::gone).count() == 1);
      List<ILoggingEvent> events = snapshot(captured);
      assertThat(events.stream().filter(HostileClientsTest::gone))
          .hasSize(1)
          .allSatisfy(e -> assertThat(e.getThrowableProxy()).isNull());
      assertThat(events)
          .noneMatch(e -> e.getLevel().isGreaterOrEqual(Level.ERROR))
          .noneMatch(e -> e.getThrowableProxy() != null);
    } finally {
      root.detachAppender(captured);
      backendLog.setLevel(level);
    }
  }

  private static List<ILoggingEvent> snapshot(ListAppender<ILoggingEvent> appender) {
    synchronized (appender.list) {
      return new ArrayList<>(appender.list);
    }
  }

  private static boolean gone(ILoggingEvent e) {
    return line(e).contains("hostile-gone") && line(e).contains("went away");
  }

  private static String line(ILoggingEvent e) {
    return e.getLoggerName() + " " + e.getFormattedMessage();
  }
}
