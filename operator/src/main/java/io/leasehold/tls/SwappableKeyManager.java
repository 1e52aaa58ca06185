package io.leasehold.tls;

import java.net.Socket;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.Principal;
import java.security.PrivateKey;
import java.security.cert.X509Certificate;
import java.util.concurrent.atomic.AtomicReference;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.X509ExtendedKeyManager;

/**
 * The server's key manager, asked for the certificate at every handshake, whose certificate and key
 * can be swapped while the server runs: a renewed certificate takes effect for the next connection,
 * and no connection ever sees the server without one.
 */
final class SwappableKeyManager extends X509ExtendedKeyManager {

  private final AtomicReference<X509ExtendedKeyManager> delegate = new AtomicReference<>();

  SwappableKeyManager(TlsMaterial material) {
    swap(material);
  }

  void swap(TlsMaterial material) {
    delegate.set(managerFor(material));
  }

  private static X509ExtendedKeyManager managerFor(TlsMaterial material) {
    try {
      KeyStore store = KeyStore.getInstance("PKCS12");
      store.load(null, null);
      store.setKeyEntry(
          "backend",
          Pem.privateKey(material.privateKey(), "private key"),
          new char[0],
          Pem.certificates(material.certificateChain(), "certificate")
              .toArray(X509Certificate[]::new));
      KeyManagerFactory factory =
          KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
      factory.init(store, new char[0]);
      for (var m : factory.getKeyManagers()) {
        if (m instanceof X509ExtendedKeyManager x) {
          return x;
        }
      }
      throw new IllegalStateException("the JDK gave no X.509 key manager");
    } catch (GeneralSecurityException | java.io.IOException e) {
      throw new IllegalArgumentException(
          "cannot use the certificate and key: " + e.getMessage(), e);
    }
  }

  @Override
  public String[] getClientAliases(String keyType, Principal[] issuers) {
    return delegate.get().getClientAliases(keyType, issuers);
  }

  @Override
  public String chooseClientAlias(String[] keyType, Principal[] issuers, Socket socket) {
    return delegate.get().chooseClientAlias(keyType, issuers, socket);
  }

  @Override
  public String[] getServerAliases(String keyType, Principal[] issuers) {
    return delegate.get().getServerAliases(keyType, issuers);
  }

  @Override
  public String chooseServerAlias(String keyType, Principal[] issuers, Socket socket) {
    return delegate.get().chooseServerAlias(keyType, issuers, socket);
  }

  @Override
  public String chooseEngineServerAlias(String keyType, Principal[] issuers, SSLEngine engine) {
    return delegate.get().chooseEngineServerAlias(keyType, issuers, engine);
  }

  @Override
  public X509Certificate[] getCertificateChain(String alias) {
    return delegate.get().getCertificateChain(alias);
  }

  @Override
  public PrivateKey getPrivateKey(String alias) {
    return delegate.get().getPrivateKey(alias);
  }
}
