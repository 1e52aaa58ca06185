package io.leasehold.cluster;

import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

/** TLS for clients of the backend: trusting the CA the operator publishes. */
public final class ClusterHttp {

  private ClusterHttp() {}

  /** An SSL context that trusts the certificates in {@code caPem} (and nothing else). */
  public static SSLContext trusting(String caPem) {
    try {
      CertificateFactory factory = CertificateFactory.getInstance("X.509");
      KeyStore store = KeyStore.getInstance(KeyStore.getDefaultType());
      store.load(null, null);
      int i = 0;
      for (Certificate c :
          factory.generateCertificates(
              new ByteArrayInputStream(caPem.getBytes(StandardCharsets.US_ASCII)))) {
        store.setCertificateEntry("ca-" + i++, c);
      }
      TrustManagerFactory trust =
          TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
      trust.init(store);
      SSLContext context = SSLContext.getInstance("TLS");
      context.init(null, trust.getTrustManagers(), null);
      return context;
    } catch (GeneralSecurityException | java.io.IOException e) {
      throw new IllegalStateException("cannot trust the backend's CA: " + e.getMessage(), e);
    }
  }
}
