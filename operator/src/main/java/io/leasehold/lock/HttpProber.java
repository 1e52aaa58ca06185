package io.leasehold.lock;

import java.net.ConnectException;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Flow;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLException;
import javax.net.ssl.TrustManager;
import javax.net.ssl.X509ExtendedTrustManager;

/**
 * Asks another replica's backend which run it is ({@link ReplicaLiveness#PROBE_PATH}). Only whether
 * and how fast it answers counts, and the run it names, which is not trusted for anything but
 * passing over its clients once: so its certificate is not checked (the replicas' serving
 * certificate names the Service, not the pod address the probe uses).
 *
 * <p>The address comes from a heartbeat Lease, which anyone who may write Leases there can edit:
 * only its scheme, host and port are used (the path is always {@link ReplicaLiveness#PROBE_PATH}),
 * the whole exchange, body included, must end within the timeout, and at most {@link #MAX_BODY}
 * bytes of the answer are read.
 */
final class HttpProber implements ReplicaLiveness.Prober {

  /** The most of an answer read: a run's name is an identity and a nonce. */
  static final int MAX_BODY = 320;

  private final HttpClient http;
  private final Duration timeout;

  private HttpProber(HttpClient http, Duration timeout) {
    this.http = http;
    this.timeout = timeout;
  }

  static HttpProber create(Duration timeout) {
    HttpClient.Builder b =
        HttpClient.newBuilder()
            .connectTimeout(timeout)
            .followRedirects(HttpClient.Redirect.NEVER)
            .version(HttpClient.Version.HTTP_1_1);
    try {
      SSLContext tls = SSLContext.getInstance("TLS");
      tls.init(null, new TrustManager[] {new AnyCertificate()}, null);
      b.sslContext(tls);
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("no TLS for replica probes: " + e.getMessage(), e);
    }
    return new HttpProber(b.build(), timeout);
  }

  /** The probe address of a replica advertising {@code url}: its scheme, host and port only. */
  static Optional<URI> probeAddress(String url) {
    try {
      URI u = URI.create(url);
      String scheme = u.getScheme();
      if (!("http".equals(scheme) || "https".equals(scheme))
          || u.getHost() == null
          || u.getPort() <= 0) {
        return Optional.empty();
      }
      return Optional.of(
          new URI(scheme, null, u.getHost(), u.getPort(), ReplicaLiveness.PROBE_PATH, null, null));
    } catch (IllegalArgumentException | java.net.URISyntaxException e) {
      return Optional.empty();
    }
  }

  @Override
  public ReplicaLiveness.Probe probe(String url) {
    Optional<URI> address = probeAddress(url);
    if (address.isEmpty()) {
      return ReplicaLiveness.Probe.unknown("not an http(s) address with a host and port");
    }
    HttpRequest request = HttpRequest.newBuilder(address.get()).timeout(timeout).GET().build();
    CompletableFuture<HttpResponse<String>> answer =
        http.sendAsync(request, info -> new CappedBody(MAX_BODY));
    try {
      HttpResponse<String> r = answer.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
      if (r.statusCode() != 200) {
        return ReplicaLiveness.Probe.unknown("answered " + r.statusCode());
      }
      return ReplicaLiveness.Probe.answered(r.body().strip());
    } catch (TimeoutException e) {
      answer.cancel(true);
      return ReplicaLiveness.Probe.silent("no whole answer in time");
    } catch (ExecutionException e) {
      Throwable cause = e.getCause();
      if (cause instanceof HttpTimeoutException) {
        return ReplicaLiveness.Probe.silent(cause.getMessage());
      }
      if (cause instanceof SSLException) {
        // It spoke TLS back (a handshake it refused, say for want of a client certificate).
        return ReplicaLiveness.Probe.unknown("TLS: " + cause.getMessage());
      }
      if (cause instanceof ConnectException) {
        return ReplicaLiveness.Probe.refused(String.valueOf(cause.getMessage()));
      }
      // Reset or cut off: a process going down, or a network in trouble.
      return ReplicaLiveness.Probe.silent(String.valueOf(cause));
    } catch (InterruptedException e) {
      answer.cancel(true);
      Thread.currentThread().interrupt();
      return ReplicaLiveness.Probe.unknown("interrupted");
    }
  }

  /** Reads at most {@code limit} bytes of a body as UTF-8 and drops the rest unread. */
  private static final class CappedBody implements HttpResponse.BodySubscriber<String> {
    private final int limit;
    private final byte[] read;
    private int length;
    private Flow.Subscription subscription;
    private final CompletableFuture<String> body = new CompletableFuture<>();

    CappedBody(int limit) {
      this.limit = limit;
      this.read = new byte[limit];
    }

    @Override
    public CompletionStage<String> getBody() {
      return body;
    }

    @Override
    public void onSubscribe(Flow.Subscription s) {
      subscription = s;
      s.request(1);
    }

    @Override
    public void onNext(List<ByteBuffer> buffers) {
      for (ByteBuffer b : buffers) {
        int n = Math.min(b.remaining(), limit - length);
        b.get(read, length, n);
        length += n;
      }
      if (length >= limit) {
        subscription.cancel();
        finish();
      } else {
        subscription.request(1);
      }
    }

    @Override
    public void onError(Throwable t) {
      body.completeExceptionally(t);
    }

    @Override
    public void onComplete() {
      finish();
    }

    private void finish() {
      body.complete(new String(read, 0, length, StandardCharsets.UTF_8));
    }
  }

  /** Accepts every certificate: see the class comment. */
  private static final class AnyCertificate extends X509ExtendedTrustManager {
    @Override
    public void checkClientTrusted(X509Certificate[] chain, String authType) {}

    @Override
    public void checkServerTrusted(X509Certificate[] chain, String authType) {}

    @Override
    public void checkClientTrusted(X509Certificate[] chain, String authType, Socket socket) {}

    @Override
    public void checkServerTrusted(X509Certificate[] chain, String authType, Socket socket) {}

    @Override
    public void checkClientTrusted(X509Certificate[] chain, String authType, SSLEngine engine) {}

    @Override
    public void checkServerTrusted(X509Certificate[] chain, String authType, SSLEngine engine) {}

    @Override
    public X509Certificate[] getAcceptedIssuers() {
      return new X509Certificate[0];
    }
  }
}
