package io.leasehold.tls;

import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.http.ClientAuth;
import io.vertx.core.http.HttpServerOptions;
import io.vertx.core.net.KeyCertOptions;
import io.vertx.core.net.PemTrustOptions;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * HTTPS for the Terraform backend: the certificate it serves (from a {@link TlsSource}, read again
 * every {@code reloadInterval} so renewals by cert-manager, a mounted Secret or the self-signed CA
 * take effect without a restart), and optionally client certificates signed by a given CA.
 */
public final class BackendTls {

  private static final Logger LOG = LoggerFactory.getLogger(BackendTls.class);

  /** Whether clients must present a certificate. */
  public enum ClientCertificates {
    /** None asked for. */
    NONE,
    /** Asked for; a client without one authenticates with its token instead. */
    REQUEST,
    /** Every connection must present one signed by the client CA. */
    REQUIRE
  }

  /**
   * Client certificate verification.
   *
   * @param mode whether clients must present one
   * @param caPem the CA certificates that sign them (PEM)
   * @param source names the CA's origin in messages
   */
  public record ClientAuthentication(ClientCertificates mode, String caPem, String source) {
    public ClientAuthentication {
      if (mode != ClientCertificates.NONE) {
        Pem.certificates(caPem, source);
      }
    }

    public static final ClientAuthentication NONE =
        new ClientAuthentication(ClientCertificates.NONE, "", "none");
  }

  private final TlsSource source;
  private final ClientAuthentication clients;
  private final Duration reloadInterval;
  private final AtomicReference<TlsMaterial> current = new AtomicReference<>();
  private SwappableKeyManager keyManager;
  private final List<Consumer<TlsMaterial>> listeners = new CopyOnWriteArrayList<>();

  private BackendTls(TlsSource source, ClientAuthentication clients, Duration reloadInterval) {
    this.source = source;
    this.clients = clients;
    this.reloadInterval = reloadInterval;
  }

  /**
   * Reads the certificate once, so a bad file or Secret stops the start with a message naming it.
   */
  public static BackendTls load(
      TlsSource source, ClientAuthentication clients, Duration reloadInterval) {
    BackendTls tls = new BackendTls(source, clients, reloadInterval);
    tls.current.set(source.load());
    tls.keyManager = new SwappableKeyManager(tls.current.get());
    LOG.info(
        "the backend serves HTTPS with {} from {} (valid until {}){}",
        tls.current.get().leaf().getSubjectX500Principal().getName(),
        source.describe(),
        tls.current.get().leaf().getNotAfter().toInstant(),
        clients.mode() == ClientCertificates.NONE
            ? ""
            : "; client certificates "
                + (clients.mode() == ClientCertificates.REQUIRE ? "required" : "accepted")
                + ", signed by "
                + clients.source());
    return tls;
  }

  /** The material served now. */
  public TlsMaterial current() {
    return current.get();
  }

  public ClientCertificates clientCertificates() {
    return clients.mode();
  }

  /** Called with the material now and after every change (to publish the CA, say). */
  public void onChange(Consumer<TlsMaterial> listener) {
    listeners.add(listener);
    listener.accept(current.get());
  }

  /** Makes {@code options} serve HTTPS with the current material. */
  public HttpServerOptions configure(HttpServerOptions options) {
    options.setSsl(true).setKeyCertOptions(KeyCertOptions.wrap(keyManager));
    if (clients.mode() != ClientCertificates.NONE) {
      options
          .setClientAuth(
              clients.mode() == ClientCertificates.REQUIRE
                  ? ClientAuth.REQUIRED
                  : ClientAuth.REQUEST)
          .setTrustOptions(trust());
    }
    return options;
  }

  /**
   * Reads the source again every reload interval and, when the certificate changed, serves the new
   * one from the next handshake on. A failed read keeps the current certificate and says why.
   */
  public void keepCurrent(Vertx vertx) {
    AtomicBoolean busy = new AtomicBoolean();
    vertx.setPeriodic(
        reloadInterval.toMillis(),
        id -> {
          if (!busy.compareAndSet(false, true)) {
            return; // The previous read is still going on.
          }
          vertx
              .executeBlocking(source::load, false)
              .onComplete(r -> busy.set(false))
              .onSuccess(this::serve)
              .onFailure(
                  e ->
                      LOG.warn(
                          "cannot read the backend's certificate from {} (still serving the"
                              + " current one, valid until {}): {}",
                          source.describe(),
                          current.get().leaf().getNotAfter().toInstant(),
                          String.valueOf(e)));
        });
  }

  private void serve(TlsMaterial fresh) {
    if (fresh.equals(current.get())) {
      return;
    }
    keyManager.swap(fresh);
    current.set(fresh);
    LOG.info(
        "the backend serves a renewed certificate from {}, valid until {}",
        source.describe(),
        fresh.leaf().getNotAfter().toInstant());
    listeners.forEach(l -> l.accept(fresh));
  }

  private PemTrustOptions trust() {
    return new PemTrustOptions().addCertValue(Buffer.buffer(clients.caPem()));
  }

  /** The CA runners should trust, when the source knows it. */
  public Optional<String> ca() {
    return current.get().ca();
  }
}
