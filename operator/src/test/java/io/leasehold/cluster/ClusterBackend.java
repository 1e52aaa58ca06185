package io.leasehold.cluster;

import io.leasehold.lock.LockInfo;
import io.leasehold.tls.Pem;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.Base64;
import java.util.Locale;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

/**
 * Terraform's {@code http} backend protocol spoken to one replica over HTTPS, verifying the
 * backend's certificate against the CA the operator publishes, as one identity: HTTP Basic auth
 * whose password is a ServiceAccount token (what {@code TF_HTTP_PASSWORD} carries).
 */
public final class ClusterBackend {

  /** A reply: its status and body. */
  public record Answer(int status, String body) {}

  private final SSLContext ssl;
  private final HttpClient http;
  private final String backendUrl;
  private final String namespace;
  private final String token;

  private ClusterBackend(
      SSLContext ssl, HttpClient http, String backendUrl, String namespace, String token) {
    this.ssl = ssl;
    this.http = http;
    this.backendUrl = backendUrl;
    this.namespace = namespace;
    this.token = token;
  }

  /**
   * A client of {@code replica}'s backend for states in its group's namespace, trusting only {@code
   * caPem}, sending {@code token} (null: no credentials).
   */
  public static ClusterBackend of(
      ClusterOperator.Replica replica, String namespace, String caPem, String token) {
    SSLContext ssl = trusting(caPem);
    HttpClient http =
        HttpClient.newBuilder().sslContext(ssl).connectTimeout(Duration.ofSeconds(10)).build();
    return new ClusterBackend(ssl, http, replica.backendUrl(), namespace, token);
  }

  /** The same backend as another identity. */
  public ClusterBackend as(String otherToken) {
    return new ClusterBackend(ssl, http, backendUrl, namespace, otherToken);
  }

  /** The same identity on another replica. */
  public ClusterBackend on(ClusterOperator.Replica replica) {
    return new ClusterBackend(ssl, http, replica.backendUrl(), namespace, token);
  }

  private String path(String state) {
    return "/v1/states/" + namespace + "/" + state;
  }

  public Answer send(String method, String pathAndQuery, String body) {
    HttpRequest.Builder b =
        HttpRequest.newBuilder(URI.create(backendUrl + pathAndQuery))
            .timeout(Duration.ofSeconds(90))
            .method(
                method,
                body == null
                    ? HttpRequest.BodyPublishers.noBody()
                    : HttpRequest.BodyPublishers.ofString(body, StandardCharsets.UTF_8));
    if (body != null) {
      b.header("Content-Type", "application/json");
    }
    if (token != null) {
      b.header("Authorization", basic(token));
    }
    try {
      HttpResponse<String> r = http.send(b.build(), HttpResponse.BodyHandlers.ofString());
      return new Answer(r.statusCode(), r.body());
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  public Answer get(String state) {
    return send("GET", path(state), null);
  }

  public Answer post(String state, String lockId, String json) {
    return send("POST", path(state) + (lockId == null ? "" : "?ID=" + lockId), json);
  }

  public Answer lock(String state, LockInfo info) {
    return send("LOCK", path(state) + "/lock", info.toJson());
  }

  public Answer unlock(String state, LockInfo info) {
    return send("UNLOCK", path(state) + "/lock", info.toJson());
  }

  /** UNLOCK with an empty body: {@code terraform force-unlock}. */
  public Answer forceUnlock(String state) {
    return send("UNLOCK", path(state) + "/lock", "");
  }

  /**
   * Sends {@code LOCK ...?wait=WAIT} on a connection of its own, which the test may hang up at any
   * moment, and returns at once.
   */
  public WaitingLock lockWaiting(String state, LockInfo info, String wait) {
    return new WaitingLock(path(state) + "/lock?wait=" + wait, info);
  }

  /** A LOCK that waits on the server, on its own TLS connection. */
  public final class WaitingLock implements AutoCloseable {
    private final SSLSocket socket;
    private final LockInfo info;
    private final CompletableFuture<Answer> answer = new CompletableFuture<>();

    private WaitingLock(String pathAndQuery, LockInfo info) {
      this.info = info;
      URI uri = URI.create(backendUrl);
      try {
        socket = (SSLSocket) ssl.getSocketFactory().createSocket(uri.getHost(), uri.getPort());
        SSLParameters params = socket.getSSLParameters();
        params.setEndpointIdentificationAlgorithm("HTTPS");
        socket.setSSLParameters(params);
        socket.startHandshake();
        byte[] body = info.toJson().getBytes(StandardCharsets.UTF_8);
        StringBuilder head =
            new StringBuilder()
                .append("LOCK ")
                .append(pathAndQuery)
                .append(" HTTP/1.1\r\nHost: ")
                .append(uri.getHost())
                .append(':')
                .append(uri.getPort())
                .append("\r\nContent-Type: application/json\r\nContent-Length: ")
                .append(body.length)
                .append("\r\n");
        if (token != null) {
          head.append("Authorization: ").append(basic(token)).append("\r\n");
        }
        head.append("\r\n");
        OutputStream out = socket.getOutputStream();
        out.write(head.toString().getBytes(StandardCharsets.US_ASCII));
        out.write(body);
        out.flush();
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
      Thread reader = new Thread(this::read, "waiting-lock-" + info.id());
      reader.setDaemon(true);
      reader.start();
    }

    private void read() {
      try {
        InputStream in = socket.getInputStream();
        String status = line(in);
        if (status == null) {
          answer.completeExceptionally(new IOException("closed without an answer"));
          return;
        }
        int code = Integer.parseInt(status.split(" ")[1]);
        int length = 0;
        for (String h = line(in); h != null && !h.isEmpty(); h = line(in)) {
          if (h.toLowerCase(Locale.ROOT).startsWith("content-length:")) {
            length = Integer.parseInt(h.substring(h.indexOf(':') + 1).trim());
          }
        }
        answer.complete(
            new Answer(code, new String(in.readNBytes(length), StandardCharsets.UTF_8)));
      } catch (IOException | RuntimeException e) {
        answer.completeExceptionally(e);
      }
    }

    public LockInfo info() {
      return info;
    }

    /** The answer, waiting up to {@code timeout}; null when none came (yet). */
    public Answer answer(Duration timeout) {
      try {
        return answer.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
      } catch (TimeoutException e) {
        return null;
      } catch (ExecutionException e) {
        return null;
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return null;
      }
    }

    /** Whether an answer came already. */
    public boolean answered() {
      return answer.isDone() && !answer.isCompletedExceptionally();
    }

    /** Whether the connection ended without an answer (the server closed it). */
    public boolean cutOff() {
      return answer.isCompletedExceptionally();
    }

    /** Hangs up, as a client that gives up does (Ctrl-C, a cancelled CI job, kill -9). */
    @Override
    public void close() {
      try {
        socket.close();
      } catch (IOException e) {
        // Closed already.
      }
    }
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

  private static String basic(String token) {
    return "Basic "
        + Base64.getEncoder().encodeToString(("runner:" + token).getBytes(StandardCharsets.UTF_8));
  }

  private static SSLContext trusting(String caPem) {
    try {
      KeyStore trust = KeyStore.getInstance("PKCS12");
      trust.load(null, null);
      int i = 0;
      for (X509Certificate c : Pem.certificates(caPem, "CA")) {
        trust.setCertificateEntry("ca-" + i++, c);
      }
      TrustManagerFactory tmf =
          TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
      tmf.init(trust);
      SSLContext ssl = SSLContext.getInstance("TLS");
      ssl.init(null, tmf.getTrustManagers(), null);
      return ssl;
    } catch (Exception e) {
      throw new IllegalStateException("cannot trust the backend's CA: " + e.getMessage(), e);
    }
  }
}
