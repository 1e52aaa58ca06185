package io.leasehold.support;

import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.classic.spi.IThrowableProxy;
import ch.qos.logback.classic.spi.StackTraceElementProxy;
import ch.qos.logback.core.filter.Filter;
import ch.qos.logback.core.spi.FilterReply;

/**
 * Drops, from the tests' console only (logback-test.xml), the library warnings that tests cause on
 * purpose when they stop a replica in the middle of its work, so that a passing build shows the
 * warnings that matter:
 *
 * <ul>
 *   <li>Fabric8's leader elector reporting that its Lease request was interrupted (the elector was
 *       stopped while it asked: the replica was closed);
 *   <li>Netty failing to hand an accepted connection to a Vert.x event loop that is shutting down
 *       (a backend closed while clients still connect).
 * </ul>
 *
 * Any other warning of the same loggers, and everything else, is logged as before.
 */
public final class ExpectedNoise extends Filter<ILoggingEvent> {

  @Override
  public FilterReply decide(ILoggingEvent event) {
    String logger = event.getLoggerName();
    IThrowableProxy thrown = event.getThrowableProxy();
    if (thrown == null) {
      return FilterReply.NEUTRAL;
    }
    if (logger.endsWith(".leaderelection.LeaderElector") && interrupted(thrown)) {
      return FilterReply.DENY;
    }
    if (logger.equals("io.netty.bootstrap.ServerBootstrap")
        && event.getFormattedMessage().startsWith("Failed to register an accepted channel")
        && thrown.getClassName().equals(IllegalStateException.class.getName())
        && thrownAt(thrown, "io.vertx.core.net.impl.VertxEventLoopGroup")) {
      return FilterReply.DENY;
    }
    return FilterReply.NEUTRAL;
  }

  private static boolean interrupted(IThrowableProxy thrown) {
    for (IThrowableProxy t = thrown; t != null; t = t.getCause()) {
      if (t.getClassName().equals(InterruptedException.class.getName())
          || t.getClassName().equals(java.io.InterruptedIOException.class.getName())) {
        return true;
      }
    }
    return false;
  }

  private static boolean thrownAt(IThrowableProxy thrown, String className) {
    StackTraceElementProxy[] frames = thrown.getStackTraceElementProxyArray();
    return frames != null
        && frames.length > 0
        && frames[0].getStackTraceElement().getClassName().equals(className);
  }
}
