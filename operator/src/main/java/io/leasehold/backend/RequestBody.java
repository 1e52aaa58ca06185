package io.leasehold.backend;

import io.vertx.core.Context;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.http.HttpServerRequest;
import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayDeque;
import java.util.Deque;

/**
 * A request body as a blocking {@link InputStream} for a worker thread, fed by the event loop with
 * back-pressure: the request is paused while more than {@value #HIGH_WATER} bytes wait to be read,
 * so a large body is never buffered whole. Created on the event loop before the request's first
 * byte is delivered; nothing is read until the worker first reads.
 */
final class RequestBody extends InputStream {

  static final int HIGH_WATER = 1024 * 1024;
  private static final int LOW_WATER = HIGH_WATER / 4;

  private final HttpServerRequest request;
  private final Context context;
  private final Deque<Buffer> queue = new ArrayDeque<>();
  private Buffer head;
  private int headOffset;
  private long queued;
  private boolean ended;
  private boolean paused = true;
  private boolean started;
  private boolean discarding;
  private Throwable failure;

  private RequestBody(HttpServerRequest request, Context context) {
    this.request = request;
    this.context = context;
  }

  /** Pauses {@code request} and takes over its body; call on the request's event loop. */
  static RequestBody of(HttpServerRequest request, Context context) {
    request.pause();
    RequestBody body = new RequestBody(request, context);
    request.handler(body::arrived);
    request.endHandler(v -> body.end(null));
    request.exceptionHandler(body::end);
    return body;
  }

  /** Whether every byte of the body arrived (read or not). */
  synchronized boolean complete() {
    return ended && failure == null;
  }

  private void arrived(Buffer buffer) {
    boolean pause;
    synchronized (this) {
      if (discarding || buffer.length() == 0) {
        return;
      }
      queue.addLast(buffer);
      queued += buffer.length();
      // Paused again whenever over the mark, whatever was decided before: a pause is idempotent.
      pause = queued > HIGH_WATER || !started;
      if (pause) {
        paused = true;
      }
      notifyAll();
    }
    if (pause) {
      flow();
    }
  }

  /**
   * Pauses or resumes the request as the flag says now; runs on the event loop, so whichever runs
   * last applies the latest decision.
   */
  private void flow() {
    boolean pause;
    synchronized (this) {
      pause = paused && !discarding;
    }
    if (pause) {
      request.pause();
    } else {
      request.resume();
    }
  }

  private void end(Throwable cause) {
    synchronized (this) {
      if (!ended) {
        ended = true;
        failure = cause;
      }
      notifyAll();
    }
  }

  /** Drops whatever is left of the body: the answer goes out without it. */
  void discard() {
    synchronized (this) {
      discarding = true;
      queue.clear();
      head = null;
      queued = 0;
      notifyAll();
    }
    resumeOnContext();
  }

  @Override
  public int read() throws IOException {
    byte[] one = new byte[1];
    return read(one, 0, 1) < 0 ? -1 : one[0] & 0xff;
  }

  @Override
  public int read(byte[] b, int off, int len) throws IOException {
    if (len == 0) {
      return 0;
    }
    boolean resume = false;
    int n;
    synchronized (this) {
      if (!started) {
        started = true;
        paused = false;
        resume = true;
      }
      try {
        while (head == null && queue.isEmpty() && !ended && !discarding) {
          if (resume) {
            // Let the event loop deliver while this thread waits.
            resumeOnContext();
            resume = false;
          }
          wait();
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted while reading the request body", e);
      }
      if (discarding) {
        throw new IOException("the request body was discarded");
      }
      if (head == null && !queue.isEmpty()) {
        head = queue.removeFirst();
        headOffset = 0;
      }
      if (head == null) {
        if (failure != null) {
          throw new IOException("the request body was cut off: " + failure.getMessage(), failure);
        }
        n = -1;
      } else {
        n = Math.min(len, head.length() - headOffset);
        head.getBytes(headOffset, headOffset + n, b, off);
        headOffset += n;
        queued -= n;
        if (headOffset == head.length()) {
          head = null;
        }
        if (paused && started && queued < LOW_WATER && !ended) {
          paused = false;
          resume = true;
        }
      }
    }
    if (resume) {
      resumeOnContext();
    }
    return n;
  }

  private void resumeOnContext() {
    context.runOnContext(v -> flow());
  }
}
