package io.leasehold.support;

import io.leasehold.lock.LockInfo;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLSocket;

/**
 * A LOCK request on its own connection, which a test can hang up at any moment: a client that gives
 * up while it waits (Ctrl-C, a cancelled CI job, a proxy timeout, kill -9).
 */
public final class RawLock implements AutoCloseable {

  /** The answer, once it came. */
  public record Answer(int status, String body) {}

  private final Socket socket;
  private final LockInfo info;
  private Answer answer;

  private RawLock(Socket socket, LockInfo info) {
    this.socket = socket;
    this.info = info;
  }

  /**
   * Sends {@code LOCK base + state + "/lock" + query} with {@code info}, and returns at once.
   *
   * @param base the backend's state URL prefix, e.g. {@code http://127.0.0.1:8080/v1/states/}
   */
  public static RawLock send(String base, String state, LockInfo info, String query)
      throws IOException {
    return send(base, state, info, query, Map.of());
  }

  public static RawLock send(
      String base, String state, LockInfo info, String query, Map<String, String> headers)
      throws IOException {
    return send(base, state, info, query, headers, null);
  }

  /** Over TLS when {@code tls} is given (an {@code https} backend). */
  public static RawLock send(
      String base,
      String state,
      LockInfo info,
      String query,
      Map<String, String> headers,
      SSLContext tls)
      throws IOException {
    URI uri = URI.create(base + state + "/lock" + (query == null ? "" : query));
    Socket plain = new Socket();
    plain.connect(new InetSocketAddress(uri.getHost(), uri.getPort()), 5_000);
    Socket socket = plain;
    if (tls != null) {
      SSLSocket secure =
          (SSLSocket)
              tls.getSocketFactory().createSocket(plain, uri.getHost(), uri.getPort(), true);
      secure.startHandshake();
      socket = secure;
    }
    byte[] body = info.toJson().getBytes(StandardCharsets.UTF_8);
    StringBuilder head =
        new StringBuilder()
            .append("LOCK ")
            .append(uri.getRawPath())
            .append(uri.getRawQuery() == null ? "" : "?" + uri.getRawQuery())
            .append(" HTTP/1.1\r\nHost: ")
            .append(uri.getHost())
            .append(':')
            .append(uri.getPort())
            .append("\r\nContent-Type: application/json\r\nContent-Length: ")
            .append(body.length)
            .append("\r\n");
    headers.forEach((k, v) -> head.append(k).append(": ").append(v).append("\r\n"));
    head.append("\r\n");
    OutputStream out = socket.getOutputStream();
    out.write(head.toString().getBytes(StandardCharsets.US_ASCII));
    out.write(body);
    out.flush();
    return new RawLock(socket, info);
  }

  public LockInfo info() {
    return info;
  }

  /** The answer, waiting up to {@code timeout}; null when none came in that time. */
  public synchronized Answer answer(Duration timeout) throws IOException {
    if (answer != null) {
      return answer;
    }
    socket.setSoTimeout((int) Math.max(1, timeout.toMillis()));
    InputStream in = socket.getInputStream();
    try {
      String status = line(in);
      if (status == null) {
        return null;
      }
      int code = Integer.parseInt(status.split(" ")[1]);
      int length = 0;
      for (String h = line(in); h != null && !h.isEmpty(); h = line(in)) {
        String lower = h.toLowerCase(Locale.ROOT);
        if (lower.startsWith("content-length:")) {
          length = Integer.parseInt(h.substring(h.indexOf(':') + 1).trim());
        }
      }
      String body = new String(in.readNBytes(length), StandardCharsets.UTF_8);
      answer = new Answer(code, body);
      return answer;
    } catch (SocketTimeoutException e) {
      return null;
    }
  }

  /** Whether an answer came within {@code timeout}. */
  public boolean answered(Duration timeout) throws IOException {
    return answer(timeout) != null;
  }

  private static String line(InputStream in) throws IOException {
    ByteArrayOutputStream b = new ByteArrayOutputStream();
    int c;
    while ((c = in.read()) >= 0) {
      if (c == '\n') {
        String s = b.toString(StandardCharsets.US_ASCII);
        return s.endsWith("\r") ? s.substring(0, s.length() - 1) : s;
      }
      b.write(c);
    }
    return b.size() == 0 ? null : b.toString(StandardCharsets.US_ASCII);
  }

  /**
   * Gives up: sends FIN (as a client that gives up does when it closes) but keeps reading, so the
   * test learns what the server did: the answer it had already sent (the lock was granted before it
   * saw the hang-up), or empty when it closed the connection without one.
   */
  public Optional<Answer> hangUp(Duration timeout) throws IOException {
    if (answer != null) {
      return Optional.of(answer);
    }
    // Over TLS this sends close_notify and half-closes as well, so the answer can still be read.
    socket.shutdownOutput();
    try {
      return Optional.ofNullable(answer(timeout));
    } catch (IOException e) {
      return Optional.empty();
    } finally {
      close();
    }
  }

  /** Hangs up, as a client that gives up does. */
  @Override
  public void close() {
    try {
      socket.close();
    } catch (IOException e) {
      // Closed already.
    }
  }
}
