package io.leasehold.backend;

import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelPipeline;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpMessage;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpConnection;
import io.vertx.core.http.HttpServerOptions;
import io.vertx.core.http.impl.VertxHttpRequestDecoder;
import io.vertx.core.net.impl.ConnectionBase;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Keeps idle and slow connections from piling up, and requests with ambiguous framing from being
 * read at all:
 *
 * <ul>
 *   <li>a connection with no request in progress (fresh, between keep-alive requests, or still
 *       sending its headers) is closed after {@code idle}; a request being answered is never timed
 *       out here, so a LOCK waiting with {@code ?wait=} keeps its connection;
 *   <li>a request with both {@code Content-Length} and {@code Transfer-Encoding} keeps both headers
 *       (Netty would quietly drop {@code Content-Length}), so that it is refused and its connection
 *       closed rather than have a second request smuggled in its body.
 * </ul>
 */
final class ConnectionGuard {

  private final Vertx vertx;
  private final HttpServerOptions options;
  private final long idleMillis;
  private final Map<HttpConnection, Long> idleTimers = new ConcurrentHashMap<>();

  ConnectionGuard(Vertx vertx, HttpServerOptions options, Duration idle) {
    this.vertx = vertx;
    this.options = options;
    this.idleMillis = Math.max(1, idle.toMillis());
  }

  /** A new connection: strict framing, and closed if it stays idle. */
  void connected(HttpConnection connection) {
    if (connection instanceof ConnectionBase base) {
      ChannelPipeline pipeline = base.channel().pipeline();
      if (pipeline.get("httpDecoder") instanceof VertxHttpRequestDecoder) {
        pipeline.replace("httpDecoder", "httpDecoder", new StrictFramingDecoder(options));
      }
    }
    connection.closeHandler(v -> disarm(connection));
    arm(connection);
  }

  /** A request on {@code connection} is being answered: it is not idle. */
  void requestStarted(HttpConnection connection) {
    disarm(connection);
  }

  /** The answer is out: the connection waits for its next request, for a while. */
  void requestEnded(HttpConnection connection) {
    arm(connection);
  }

  private void arm(HttpConnection connection) {
    disarm(connection);
    long timer =
        vertx.setTimer(
            idleMillis,
            id -> {
              if (idleTimers.remove(connection, id)) {
                connection.close();
              }
            });
    idleTimers.put(connection, timer);
  }

  private void disarm(HttpConnection connection) {
    Long timer = idleTimers.remove(connection);
    if (timer != null) {
      vertx.cancelTimer(timer);
    }
  }

  /** Whether the request's framing is ambiguous: both a length and a transfer coding. */
  static boolean conflictingFraming(io.vertx.core.MultiMap headers) {
    return headers.contains(HttpHeaderNames.CONTENT_LENGTH)
        && headers.contains(HttpHeaderNames.TRANSFER_ENCODING);
  }

  /**
   * Vert.x's request decoder, but a request with both framing headers keeps both, and nothing after
   * its headers is decoded: not its body, and not a request smuggled in it.
   */
  private static final class StrictFramingDecoder extends VertxHttpRequestDecoder {
    private boolean ambiguous;

    StrictFramingDecoder(HttpServerOptions options) {
      super(options);
    }

    @Override
    protected void decode(ChannelHandlerContext ctx, ByteBuf in, List<Object> out)
        throws Exception {
      if (ambiguous) {
        in.skipBytes(in.readableBytes());
        return;
      }
      super.decode(ctx, in, out);
    }

    @Override
    protected void handleTransferEncodingChunkedWithContentLength(HttpMessage message) {
      List<String> lengths = message.headers().getAll(HttpHeaderNames.CONTENT_LENGTH);
      super.handleTransferEncodingChunkedWithContentLength(message);
      // Netty reads the body as chunked and removes the length; put it back to be refused.
      lengths.forEach(l -> message.headers().add(HttpHeaderNames.CONTENT_LENGTH, l));
      ambiguous = true;
    }
  }
}
