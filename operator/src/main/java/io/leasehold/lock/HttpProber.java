package io.leasehold.lock;

import java.io.IOException;
import java.net.ConnectException;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.cert.X509Certificate;
import java.time.Duration;
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
 */
final class HttpProber implements ReplicaLiveness.Prober {

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

  @Override
  public ReplicaLiveness.Probe probe(String url) {
    HttpRequest request;
    try {
      request = HttpRequest.newBuilder(URI.create(url)).timeout(timeout).GET().build();
    } catch (IllegalArgumentException e) {
      return ReplicaLiveness.Probe.unknown("not an address: " + e.getMessage());
    }
    try {
      HttpResponse<String> answer =
          http.send(request, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
      if (answer.statusCode() != 200) {
        return ReplicaLiveness.Probe.unknown("answered " + answer.statusCode());
      }
      return ReplicaLiveness.Probe.answered(answer.body().strip());
    } catch (HttpTimeoutException e) {
      return ReplicaLiveness.Probe.silent(e.getMessage());
    } catch (SSLException e) {
      // It spoke TLS back (a handshake it refused, say for want of a client certificate): alive.
      return ReplicaLiveness.Probe.unknown("TLS: " + e.getMessage());
    } catch (ConnectException e) {
      return ReplicaLiveness.Probe.refused(String.valueOf(e.getMessage()));
    } catch (IOException e) {
      // Reset or cut off: a process going down, or a network in trouble; no verdict either way
      // but that it did not answer.
      return ReplicaLiveness.Probe.silent(e.toString());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return ReplicaLiveness.Probe.unknown("interrupted");
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
