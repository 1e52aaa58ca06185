package io.leasehold.support;

import static org.assertj.core.api.Assertions.assertThat;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.spi.LoggingEvent;
import ch.qos.logback.core.spi.FilterReply;
import java.io.IOException;
import java.io.InterruptedIOException;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class ExpectedNoiseTest {

  private static final String ELECTOR =
      "io.fabric8.kubernetes.client.extended.leaderelection.LeaderElector";
  private final LoggerContext context = new LoggerContext();
  private final ExpectedNoise filter = new ExpectedNoise();

  private FilterReply decide(String logger, String message, Throwable thrown) {
    Logger l = context.getLogger(logger);
    return filter.decide(
        new LoggingEvent(Logger.class.getName(), l, Level.WARN, message, thrown, null));
  }

  @Test
  @DisplayName(
      "Only an interrupted Lease request of a stopped leader elector is dropped; its other"
          + " failures and other loggers' warnings are kept")
  void leaderElector() {
    var interrupted = new IOException("patch", new InterruptedIOException());
    assertThat(decide(ELECTOR, "Exception occurred while acquiring lock", interrupted))
        .isEqualTo(FilterReply.DENY);
    assertThat(decide(ELECTOR, "Exception occurred while acquiring lock", new IOException("403")))
        .isEqualTo(FilterReply.NEUTRAL);
    assertThat(decide(ELECTOR, "no exception", null)).isEqualTo(FilterReply.NEUTRAL);
    assertThat(decide("io.leasehold.operator.Leadership", "stopped", interrupted))
        .isEqualTo(FilterReply.NEUTRAL);
  }

  @Test
  @DisplayName(
      "Netty's failure to register a connection is dropped only when Vert.x's event loops are"
          + " shutting down")
  void closingEventLoop() {
    IllegalStateException closing = new IllegalStateException();
    closing.setStackTrace(
        new StackTraceElement[] {
          new StackTraceElement("io.vertx.core.net.impl.VertxEventLoopGroup", "next", null, 37)
        });
    String logger = "io.netty.bootstrap.ServerBootstrap";
    String message = "Failed to register an accepted channel: [id: 0x1]";
    assertThat(decide(logger, message, closing)).isEqualTo(FilterReply.DENY);
    assertThat(decide(logger, message, new IllegalStateException("elsewhere")))
        .isEqualTo(FilterReply.NEUTRAL);
    assertThat(decide(logger, "something else", closing)).isEqualTo(FilterReply.NEUTRAL);
  }
}
