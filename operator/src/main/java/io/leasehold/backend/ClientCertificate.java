package io.leasehold.backend;

import io.vertx.core.http.HttpServerRequest;
import java.security.cert.X509Certificate;
import java.util.Optional;
import javax.net.ssl.SSLPeerUnverifiedException;

/** The client certificate a request's TLS connection presented and the server verified. */
final class ClientCertificate {

  private ClientCertificate() {}

  static Optional<X509Certificate> of(HttpServerRequest request) {
    if (!request.isSSL()) {
      return Optional.empty();
    }
    try {
      var chain = request.connection().peerCertificates();
      return chain == null || chain.isEmpty() || !(chain.get(0) instanceof X509Certificate c)
          ? Optional.empty()
          : Optional.of(c);
    } catch (SSLPeerUnverifiedException e) {
      return Optional.empty();
    }
  }
}
