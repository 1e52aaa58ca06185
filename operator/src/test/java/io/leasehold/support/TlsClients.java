package io.leasehold.support;

import io.leasehold.tls.Pem;
import io.leasehold.tls.TlsMaterial;
import java.net.http.HttpClient;
import java.security.KeyStore;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

/** HTTP clients that verify the backend against a given CA, with or without a certificate. */
public final class TlsClients {

  private TlsClients() {}

  /** A client trusting only {@code caPem}, presenting {@code client} when given. */
  public static HttpClient trusting(String caPem, Optional<TlsMaterial> client) throws Exception {
    KeyStore trust = KeyStore.getInstance("PKCS12");
    trust.load(null, null);
    int i = 0;
    for (X509Certificate c : Pem.certificates(caPem, "CA")) {
      trust.setCertificateEntry("ca-" + i++, c);
    }
    TrustManagerFactory tmf =
        TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
    tmf.init(trust);
    KeyManagerFactory kmf = null;
    if (client.isPresent()) {
      KeyStore keys = KeyStore.getInstance("PKCS12");
      keys.load(null, null);
      List<X509Certificate> chain = Pem.certificates(client.get().certificateChain(), "client");
      keys.setKeyEntry(
          "client",
          Pem.privateKey(client.get().privateKey(), "client key"),
          new char[0],
          chain.toArray(X509Certificate[]::new));
      kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
      kmf.init(keys, new char[0]);
    }
    SSLContext ssl = SSLContext.getInstance("TLS");
    ssl.init(kmf == null ? null : kmf.getKeyManagers(), tmf.getTrustManagers(), null);
    return HttpClient.newBuilder().sslContext(ssl).connectTimeout(Duration.ofSeconds(10)).build();
  }
}
