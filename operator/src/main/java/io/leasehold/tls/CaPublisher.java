package io.leasehold.tls;

import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.ConfigMapBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Publishes the CA that signs the backend's certificate as a ConfigMap (key {@code ca.crt}) in
 * every namespace whose runners need it, as Kubernetes publishes {@code kube-root-ca.crt}: runner
 * pods mount it and give it to Terraform ({@code client_ca_certificate_pem}, or {@code
 * SSL_CERT_FILE}). The namespaces are the ones given, and, unless only those, every namespace that
 * holds a TerraformState, followed as they appear. Each write is conditional and idempotent, so
 * every replica may publish.
 */
public final class CaPublisher implements AutoCloseable {

  public static final String KEY = "ca.crt";
  private static final Logger LOG = LoggerFactory.getLogger(CaPublisher.class);

  private final KubernetesClient client;
  private final String configMap;
  private final Set<String> namespaces = ConcurrentHashMap.newKeySet();
  private final ScheduledExecutorService executor =
      Executors.newSingleThreadScheduledExecutor(
          r -> {
            Thread t = new Thread(r, "leasehold-ca-publisher");
            t.setDaemon(true);
            return t;
          });
  private volatile String ca;

  private CaPublisher(KubernetesClient client, String configMap) {
    this.client = client;
    this.configMap = configMap;
  }

  /** How often the namespaces holding TerraformStates are looked at for new ones. */
  static final long FOLLOW_SECONDS = 5;

  /**
   * Publishes the CA of {@code tls} as ConfigMap {@code configMap} in {@code namespaces}, and in
   * every namespace {@code stateNamespaces} names (those holding a TerraformState, read from the
   * operator's own cache, so no second watch is opened), looked at every few seconds; again
   * whenever the CA changes, and every ten minutes in case a ConfigMap was deleted or edited.
   *
   * @param stateNamespaces the namespaces holding TerraformStates; empty publishes only in {@code
   *     namespaces}
   */
  public static CaPublisher start(
      KubernetesClient client,
      BackendTls tls,
      String configMap,
      Set<String> namespaces,
      java.util.Optional<java.util.function.Supplier<Set<String>>> stateNamespaces) {
    CaPublisher publisher = new CaPublisher(client, configMap);
    publisher.namespaces.addAll(namespaces);
    tls.onChange(
        m -> {
          if (m.ca().isEmpty()) {
            LOG.warn(
                "the backend's certificate comes without its CA (no ca.crt): nothing is published"
                    + " in ConfigMap {}; runners must trust the certificate by other means",
                configMap);
            return;
          }
          publisher.ca = m.ca().get();
          publisher.executor.execute(publisher::publishAll);
        });
    stateNamespaces.ifPresent(
        follow ->
            publisher.executor.scheduleWithFixedDelay(
                () -> {
                  try {
                    for (String ns : follow.get()) {
                      if (publisher.namespaces.add(ns)) {
                        publisher.publish(ns);
                      }
                    }
                  } catch (RuntimeException e) {
                    LOG.warn(
                        "looking for namespaces to publish the CA in failed: {}", e.getMessage());
                  }
                },
                0,
                FOLLOW_SECONDS,
                TimeUnit.SECONDS));
    publisher.executor.scheduleWithFixedDelay(publisher::publishAll, 10, 10, TimeUnit.MINUTES);
    return publisher;
  }

  /** Publishes in every namespace known so far; blocks (used at start and by tests). */
  public void publishAll() {
    for (String ns : namespaces) {
      publish(ns);
    }
  }

  private void publish(String namespace) {
    String pem = ca;
    if (pem == null) {
      return;
    }
    try {
      ConfigMap existing = client.configMaps().inNamespace(namespace).withName(configMap).get();
      if (existing == null) {
        client
            .resource(
                new ConfigMapBuilder()
                    .withNewMetadata()
                    .withName(configMap)
                    .withNamespace(namespace)
                    .addToLabels("app.kubernetes.io/managed-by", "leasehold")
                    .addToLabels("app.kubernetes.io/component", "backend-ca")
                    .addToAnnotations(
                        "leasehold.io/description",
                        "The CA that signs leasehold's Terraform backend certificate; mount it in"
                            + " runner pods.")
                    .endMetadata()
                    .withData(Map.of(KEY, pem))
                    .build())
            .create();
        LOG.info("published the backend's CA as ConfigMap {}/{}", namespace, configMap);
      } else if (!pem.equals(existing.getData() == null ? null : existing.getData().get(KEY))) {
        client.resource(new ConfigMapBuilder(existing).withData(Map.of(KEY, pem)).build()).update();
        LOG.info("updated the backend's CA in ConfigMap {}/{}", namespace, configMap);
      }
    } catch (KubernetesClientException e) {
      if (e.getCode() == 409) {
        // Another replica wrote it at the same moment; the next round checks it.
        return;
      }
      LOG.warn(
          "cannot publish the backend's CA as ConfigMap {}/{}: {}",
          namespace,
          configMap,
          e.getMessage());
    }
  }

  @Override
  public void close() {
    executor.shutdownNow();
  }
}
