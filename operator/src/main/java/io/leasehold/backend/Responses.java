package io.leasehold.backend;

import io.fabric8.kubernetes.client.KubernetesClientException;
import io.leasehold.lock.LockService;
import io.vertx.core.AsyncResult;
import io.vertx.core.Future;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.http.HttpClosedException;
import io.vertx.core.http.HttpConnection;
import io.vertx.core.http.HttpMethod;
import io.vertx.core.http.HttpServerRequest;
import io.vertx.core.http.HttpServerResponse;
import io.vertx.ext.web.RoutingContext;
import java.io.IOException;
import java.io.InputStream;
import java.nio.channels.ClosedChannelException;
import java.time.Duration;
import java.util.Arrays;
import java.util.Map;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Sends the backend's answers. A request answered before its body was read is answered with {@code
 * Connection: close}, and the rest of its body is let in and dropped for a moment so the client
 * sees why; a streamed body goes out as the connection takes it; a request that ended without a
 * reply of its own is told why (refused, the Lease busy, a fault) or, when its client went away,
 * only logged.
 */
final class Responses {

  private static final Logger LOG = LoggerFactory.getLogger(HttpBackend.class);

  /** Where a request's drain time is kept in its routing context. */
  static final String DRAIN_KEY = "leasehold.drain";

  /** Bytes of a streamed body handed to the connection at a time. */
  private static final int STREAM_PIECE = 64 * 1024;

  private Responses() {}

  /** Sends the reply {@code result} came to, or why there is none. */
  static void reply(RoutingContext ctx, AsyncResult<Reply> result) {
    if (result.succeeded()) {
      send(ctx, result.result());
    } else {
      failed(ctx, result.cause());
    }
  }

  /**
   * A request that did not end with a reply of its own: refused (its reply is sent), the client
   * gone (one log line, nothing to send), or a fault (logged with its cause, 500).
   */
  static void failed(RoutingContext ctx, Throwable cause) {
    if (cause instanceof ReplyException e) {
      send(ctx, e.reply());
    } else if (cause instanceof BodyReader.Refused refused) {
      send(ctx, refused.reply());
    } else if (cause instanceof LockService.Busy busy) {
      // Nothing was changed: the request may simply be sent again.
      LOG.warn("backend request {} {}: {}", method(ctx), path(ctx), busy.getMessage());
      send(ctx, Reply.text(503, busy.getMessage()).withHeader("Retry-After", "1"));
    } else if (clientGone(ctx, cause)) {
      LOG.info(
          "backend request {} {}: {}",
          method(ctx),
          path(ctx),
          cause instanceof BodyReader.ClientGone
              ? cause.getMessage()
              : "the client went away (" + describe(cause) + ")");
    } else if (apiTrouble(cause).isPresent()) {
      // The API server did not answer, was overloaded or refused the operator itself: the
      // request may be sent again (Terraform does), which a 500 would not say.
      KubernetesClientException api = apiTrouble(cause).get();
      LOG.warn(
          "backend request {} {}: the Kubernetes API failed it: {}",
          method(ctx),
          path(ctx),
          apiProblem(api));
      send(
          ctx,
          Reply.text(
                  503,
                  "the Kubernetes API failed the backend's request ("
                      + apiProblem(api)
                      + "); send it again")
              .withHeader("Retry-After", "2"));
    } else {
      LOG.error("backend request {} {} failed", method(ctx), path(ctx), cause);
      send(ctx, Reply.text(500, "the backend failed: " + describe(cause)));
    }
  }

  /**
   * The API failure behind {@code cause}, if it is one that passes: no answer, a timeout, the
   * server overloaded or failing, or the operator's own credentials refused (as in the first
   * seconds of a namespace, before its RoleBinding is in force).
   */
  static Optional<KubernetesClientException> apiTrouble(Throwable cause) {
    for (Throwable t = cause; t != null; t = t.getCause() == t ? null : t.getCause()) {
      if (t instanceof KubernetesClientException k) {
        int code = k.getCode();
        return code <= 0 || code == 401 || code == 403 || code == 408 || code == 429 || code >= 500
            ? Optional.of(k)
            : Optional.empty();
      }
    }
    return Optional.empty();
  }

  private static String apiProblem(KubernetesClientException k) {
    if (k.getCode() <= 0) {
      Throwable root = k;
      while (root.getCause() != null && root.getCause() != root) {
        root = root.getCause();
      }
      return "no answer: " + describe(root);
    }
    return k.getCode() + ": " + describe(k);
  }

  private static boolean clientGone(RoutingContext ctx, Throwable cause) {
    return cause instanceof BodyReader.ClientGone
        || cause instanceof HttpClosedException
        || cause instanceof ClosedChannelException
        || ctx.response().closed();
  }

  private static String describe(Throwable t) {
    return t.getMessage() == null ? t.getClass().getSimpleName() : t.getMessage();
  }

  /** 405, saying which methods the address takes. */
  static void notAllowed(RoutingContext ctx, String allowed) {
    send(
        ctx,
        Reply.text(405, ctx.request().method().name() + " is not supported here; use " + allowed)
            .withHeader("Allow", allowed));
  }

  /** Sends {@code reply}; fails when the response was already sent or its connection closed. */
  static Future<Void> send(RoutingContext ctx, Reply reply) {
    HttpServerResponse response = ctx.response();
    if (response.ended() || response.closed()) {
      return Future.failedFuture("the response was already sent or its connection closed");
    }
    HttpServerRequest request = ctx.request();
    // Answered before its body was read (refused, or over a limit): the rest is never read
    // into anything, and the connection carries no request after it.
    boolean ambiguous = ConnectionGuard.conflictingFraming(request.headers());
    boolean unread = !request.isEnded() || ambiguous;
    response.setStatusCode(reply.status()).putHeader("Content-Type", reply.contentType());
    if (unread) {
      response.putHeader("Connection", "close");
    }
    for (Map.Entry<String, String> h : reply.headers().entrySet()) {
      response.putHeader(h.getKey(), h.getValue());
    }
    if (reply.stream() != null) {
      stream(ctx, reply.stream());
      return Future.succeededFuture();
    }
    return response
        .end(Buffer.buffer(reply.body()))
        .onComplete(
            v -> {
              if (ambiguous) {
                request.connection().close();
              } else if (unread) {
                Duration drain = ctx.get(DRAIN_KEY);
                closeAfterDrain(ctx, drain == null ? HttpBackend.Timeouts.DEFAULT.drain() : drain);
              }
            });
  }

  /**
   * Closes a connection whose request body was left unread, after letting the client finish sending
   * it for a moment (its bytes are dropped as they come): a client that reads its answer only once
   * it has sent everything still sees why it was refused.
   */
  private static void closeAfterDrain(RoutingContext ctx, Duration drain) {
    HttpServerRequest request = ctx.request();
    HttpConnection connection = request.connection();
    long timer = ctx.vertx().setTimer(drain.toMillis(), id -> connection.close());
    request.handler(buffer -> {});
    request.exceptionHandler(t -> {});
    request.endHandler(
        v -> {
          ctx.vertx().cancelTimer(timer);
          connection.close();
        });
    request.resume();
  }

  /**
   * Sends a streamed body piece by piece as the connection takes it (the response's write queue
   * bounds what is buffered), on the event loop: the stream is in memory and never blocks.
   */
  private static void stream(RoutingContext ctx, Reply.Streamed body) {
    HttpServerResponse response = ctx.response();
    InputStream in;
    try {
      in = body.open();
    } catch (IOException e) {
      LOG.error("backend request {} {}: cannot open the body", method(ctx), path(ctx), e);
      response.setStatusCode(500).end("the state cannot be read: " + e.getMessage() + "\n");
      return;
    }
    response.putHeader("Content-Length", Long.toString(body.length()));
    ctx.addEndHandler(ended -> closeQuietly(in));
    new Pump(ctx, in).run();
  }

  /** Copies a stream into the response while its write queue has room. */
  private static final class Pump {
    private final RoutingContext ctx;
    private final InputStream in;
    private final byte[] buffer = new byte[STREAM_PIECE];

    Pump(RoutingContext ctx, InputStream in) {
      this.ctx = ctx;
      this.in = in;
    }

    void run() {
      HttpServerResponse response = ctx.response();
      try {
        while (!response.closed()) {
          if (response.writeQueueFull()) {
            response.drainHandler(v -> run());
            return;
          }
          int n = in.readNBytes(buffer, 0, buffer.length);
          if (n > 0) {
            response.write(Buffer.buffer(Arrays.copyOf(buffer, n)));
          }
          if (n < buffer.length) {
            closeQuietly(in);
            response.end();
            return;
          }
        }
        closeQuietly(in);
      } catch (IOException | RuntimeException e) {
        closeQuietly(in);
        if (response.closed()) {
          // The client went away; nothing to tell it.
          return;
        }
        // Cut short: the client sees fewer bytes than Content-Length said, never a bad state.
        LOG.error("backend request {} {}: sending the body failed", method(ctx), path(ctx), e);
        ctx.request().connection().close();
      }
    }
  }

  private static void closeQuietly(InputStream in) {
    try {
      in.close();
    } catch (IOException e) {
      // Nothing held but memory.
    }
  }

  static HttpMethod method(RoutingContext ctx) {
    return ctx.request().method();
  }

  private static String path(RoutingContext ctx) {
    return ctx.request().path();
  }
}
