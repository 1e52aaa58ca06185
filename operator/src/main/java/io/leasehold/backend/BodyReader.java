package io.leasehold.backend;

import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.http.HttpServerRequest;
import java.time.Duration;
import java.util.function.Predicate;

/**
 * Reads a request body on its event loop, as it arrives, into a sink: no thread waits for it, so a
 * slow or stalled client holds nothing but its connection. The body is bounded ({@code limit}),
 * must keep arriving ({@code stall}: no byte for that long ends it) and, when {@code deadline} is
 * set, must be complete within it.
 */
final class BodyReader {

  /** A body that ended the request: answered with this reply, the connection then closed. */
  static final class Refused extends RuntimeException {
    private final transient Reply reply;

    Refused(Reply reply) {
      super(reply.bodyText().trim(), null, false, false);
      this.reply = reply;
    }

    Reply reply() {
      return reply;
    }
  }

  /** The client went away while its body was read. */
  static final class ClientGone extends RuntimeException {
    ClientGone(String message) {
      super(message, null, false, false);
    }
  }

  private BodyReader() {}

  /**
   * Reads the paused {@code request}'s body. Each piece goes to {@code sink}; when the sink returns
   * false the rest is not read and the future ends with false. Ends with true once the whole body
   * was taken.
   *
   * @param what the body, for messages ("the LOCK body")
   */
  static Future<Boolean> read(
      Vertx vertx,
      HttpServerRequest request,
      String what,
      long limit,
      Duration stall,
      Duration deadline,
      Predicate<Buffer> sink) {
    Promise<Boolean> done = Promise.promise();
    Throwable gone = Watch.of(request).failure();
    if (gone != null) {
      // The client left while the request was checked, before its body was asked for.
      return Future.failedFuture(
          new ClientGone(
              "the client went away before " + what + " was read (" + gone.getMessage() + ")"));
    }
    long[] count = {0};
    long[] stallTimer = {-1};
    long deadlineTimer =
        deadline == null
            ? -1
            : vertx.setTimer(
                deadline.toMillis(),
                id ->
                    fail(
                        request,
                        done,
                        new Refused(
                            Reply.text(
                                408,
                                what
                                    + " did not arrive within "
                                    + deadline.toSeconds()
                                    + " s. Nothing was done."))));
    Runnable restartStall =
        () -> {
          if (stallTimer[0] >= 0) {
            vertx.cancelTimer(stallTimer[0]);
          }
          stallTimer[0] =
              vertx.setTimer(
                  stall.toMillis(),
                  id ->
                      fail(
                          request,
                          done,
                          new Refused(
                              Reply.text(
                                  408,
                                  what
                                      + " stalled: nothing arrived for "
                                      + stall.toSeconds()
                                      + " s. Nothing was done."))));
        };
    done.future()
        .onComplete(
            r -> {
              if (stallTimer[0] >= 0) {
                vertx.cancelTimer(stallTimer[0]);
              }
              if (deadlineTimer >= 0) {
                vertx.cancelTimer(deadlineTimer);
              }
            });
    request.handler(
        buffer -> {
          if (done.future().isComplete()) {
            return;
          }
          count[0] += buffer.length();
          if (count[0] > limit) {
            fail(
                request,
                done,
                new Refused(
                    Reply.text(
                        413,
                        what + " is over the limit of " + limit + " bytes. Nothing was done.")));
            return;
          }
          restartStall.run();
          if (!sink.test(buffer)) {
            request.pause();
            done.tryComplete(false);
          }
        });
    request.endHandler(v -> done.tryComplete(true));
    request.exceptionHandler(
        t ->
            done.tryFail(
                new ClientGone(
                    "the client went away after sending "
                        + count[0]
                        + " bytes of "
                        + what
                        + " ("
                        + t.getMessage()
                        + ")")));
    if (request.isEnded()) {
      done.tryComplete(true);
    } else {
      restartStall.run();
      request.resume();
    }
    return done.future();
  }

  /**
   * Watches a request from its start for its client going away, so that a body asked for later
   * knows (Vert.x tells only the handler set at the time).
   */
  static final class Watch {
    private static final java.util.Map<HttpServerRequest, Watch> WATCHED =
        java.util.Collections.synchronizedMap(new java.util.WeakHashMap<>());
    private volatile Throwable failure;

    static void start(HttpServerRequest request) {
      Watch watch = new Watch();
      WATCHED.put(request, watch);
      request.exceptionHandler(t -> watch.failure = t);
    }

    static Watch of(HttpServerRequest request) {
      Watch watch = WATCHED.get(request);
      return watch == null ? new Watch() : watch;
    }

    Throwable failure() {
      return failure;
    }
  }

  private static void fail(HttpServerRequest request, Promise<Boolean> done, Refused why) {
    if (done.tryFail(why)) {
      request.pause();
    }
  }
}
