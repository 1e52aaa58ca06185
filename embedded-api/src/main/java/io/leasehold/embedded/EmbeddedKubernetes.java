package io.leasehold.embedded;

import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.ConfigBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.server.mock.KubernetesMockServer;
import io.fabric8.kubernetes.client.utils.Serialization;
import io.fabric8.mockwebserver.Context;
import io.fabric8.mockwebserver.ServerRequest;
import io.fabric8.mockwebserver.ServerResponse;
import io.fabric8.mockwebserver.dsl.HttpMethod;
import io.fabric8.mockwebserver.http.Buffer;
import io.fabric8.mockwebserver.http.Headers;
import io.fabric8.mockwebserver.http.RecordedRequest;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Queue;

/**
 * An in-memory Kubernetes API on loopback: the Fabric8 CRUD mock server, made to behave like a real
 * API server where leasehold, Terraform and users depend on it (type metadata filled in, custom
 * resources validated and defaulted), with leasehold's CRD installed.
 */
public final class EmbeddedKubernetes implements AutoCloseable {

  /** The generated CRD, packaged in the jar by the build. */
  public static final String CRD_RESOURCE = "/META-INF/fabric8/terraformstates.leasehold.io-v1.yml";

  public static final String DEFAULT_NAMESPACE = "default";

  /**
   * The chart's admission policies for runner Jobs, as Helm renders them for the release {@code
   * leasehold} in {@code leasehold-system}; a test checks them against the chart.
   */
  public static final String ADMISSION_POLICIES_RESOURCE =
      "/io/leasehold/embedded/admission-policies.yaml";

  /**
   * Who the clients of {@link #newClient()} are to the admission policies: the operator's
   * ServiceAccount in that release, which they let unsuspend runner Jobs.
   */
  public static final String OPERATOR_USER = "system:serviceaccount:leasehold-system:leasehold";

  private final KubernetesMockServer server;
  private final ApiServerDispatcher dispatcher;
  private final KubernetesClient client;

  private EmbeddedKubernetes(KubernetesMockServer server, ApiServerDispatcher dispatcher) {
    this.server = server;
    this.dispatcher = dispatcher;
    this.client = new KubernetesClientBuilder().withConfig(clientConfig()).build();
  }

  // The mock server logs every request through java.util.logging at INFO; keep it for problems.
  private static final java.util.logging.Logger MOCK_LOG =
      java.util.logging.Logger.getLogger("io.fabric8.mockwebserver");

  static {
    MOCK_LOG.setLevel(java.util.logging.Level.WARNING);
  }

  /** Starts the API on 127.0.0.1 at {@code port} (0 picks a free port) and installs the CRD. */
  public static EmbeddedKubernetes start(int port) {
    Map<ServerRequest, Queue<ServerResponse>> responses = new HashMap<>();
    Context context = new Context(Serialization.jsonMapper());
    ApiServerDispatcher dispatcher =
        new ApiServerDispatcher(responses, context.getMapper(), new CustomResourceValidation());
    KubernetesMockServer server =
        new KubernetesMockServer(
            context,
            new ApiHttpServer(dispatcher, context.getMapper()),
            responses,
            dispatcher,
            false);
    try {
      server.init(InetAddress.getLoopbackAddress(), port);
    } catch (RuntimeException e) {
      throw new IllegalStateException(
          "cannot start the embedded Kubernetes API on 127.0.0.1:" + port + ": " + e.getMessage(),
          e);
    }
    EmbeddedKubernetes api = new EmbeddedKubernetes(server, dispatcher);
    api.createDefaultNamespace();
    api.installCrd();
    return api;
  }

  /** The API's base URL, for example {@code http://127.0.0.1:35211}. */
  public String url() {
    return "http://" + server.getHostName() + ":" + server.getPort();
  }

  /**
   * A client of this API acting as the operator ({@link #OPERATOR_USER}); callers own it and close
   * it.
   */
  public KubernetesClient newClient() {
    return newClient(OPERATOR_USER);
  }

  /**
   * A client of this API acting as {@code user} to admission policies (it impersonates the user),
   * or anonymous when {@code user} is null; callers own it and close it.
   */
  public KubernetesClient newClient(String user) {
    Config config = clientConfig();
    if (user != null) {
      config.setImpersonateUsername(user);
    }
    return new KubernetesClientBuilder().withConfig(config).build();
  }

  /** The client the embedded API uses itself (to install the CRD and apply manifests). */
  public KubernetesClient client() {
    return client;
  }

  public Config clientConfig() {
    return new ConfigBuilder(Config.empty())
        .withMasterUrl(url())
        .withNamespace(DEFAULT_NAMESPACE)
        .withTrustCerts(true)
        .withRequestTimeout(30_000)
        .build();
  }

  /**
   * Tells {@code listener} of every write the API stores (create, update, patch, delete), with the
   * object it answered, in the order they were stored, before the writer hears back: a record with
   * no gaps, unlike a watch, which may skip versions when it reconnects.
   */
  public void onStored(java.util.function.Consumer<StoredWrite> listener) {
    dispatcher.onStored(listener);
  }

  /** The underlying mock server, for tests that add expectations. */
  public KubernetesMockServer mockServer() {
    return server;
  }

  /**
   * Stores {@code json} with {@code method} ({@code POST} to a collection, {@code PUT} to an
   * object) as it is, none of the API's checks made, and answers the store's status code: for tests
   * that need an object no API server would hold, such as a Job with a value of the wrong type.
   * Nothing that serves the API calls it.
   */
  int storeUnchecked(String method, String path, String json) {
    return dispatcher
        .storeUnchecked(
            new RecordedRequest(
                "HTTP/1.1",
                HttpMethod.valueOf(method),
                path,
                Headers.builder().add("Content-Type", "application/json").build(),
                new Buffer(json.getBytes(StandardCharsets.UTF_8))))
        .code();
  }

  /** Writes a kubeconfig for this API, for kubectl and Terraform's kubernetes backend. */
  public void writeKubeconfig(Path file) {
    String kubeconfig =
        """
        apiVersion: v1
        kind: Config
        clusters:
        - name: leasehold-embedded
          cluster:
            server: %s
        users:
        - name: leasehold-embedded
          user: {}
        contexts:
        - name: leasehold-embedded
          context:
            cluster: leasehold-embedded
            user: leasehold-embedded
            namespace: %s
        current-context: leasehold-embedded
        """
            .formatted(url(), DEFAULT_NAMESPACE);
    try {
      Path parent = file.toAbsolutePath().getParent();
      if (parent != null) {
        Files.createDirectories(parent);
      }
      Files.writeString(file, kubeconfig, StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot write kubeconfig to " + file, e);
    }
  }

  /**
   * Creates every object of a (multi-document) YAML or JSON manifest, or replaces it when it
   * exists; objects without a namespace go to {@code default}. Returns the objects as stored.
   *
   * @throws IllegalArgumentException naming the document and the API's answer when one is refused
   */
  public List<HasMetadata> apply(InputStream manifest, String source) {
    List<HasMetadata> items;
    try {
      items = client.load(manifest).items();
    } catch (KubernetesClientException | IllegalArgumentException e) {
      throw new IllegalArgumentException(
          source + ": not a Kubernetes manifest: " + e.getMessage(), e);
    }
    List<HasMetadata> applied = new ArrayList<>();
    for (HasMetadata item : items) {
      if (item == null) {
        continue;
      }
      if (item.getMetadata().getNamespace() == null
          && item instanceof io.fabric8.kubernetes.api.model.Namespaced) {
        item.getMetadata().setNamespace(DEFAULT_NAMESPACE);
      }
      try {
        applied.add(createOrReplace(item));
      } catch (KubernetesClientException e) {
        String what = item.getKind() + " " + item.getMetadata().getName();
        String message =
            e.getStatus() != null && e.getStatus().getMessage() != null
                ? e.getStatus().getMessage()
                : e.getMessage();
        throw new IllegalArgumentException(source + ": " + what + " refused: " + message, e);
      }
    }
    return applied;
  }

  /** Applies a manifest file; see {@link #apply(InputStream, String)}. */
  public List<HasMetadata> apply(Path file) {
    try (InputStream in = Files.newInputStream(file)) {
      return apply(in, file.toString());
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read " + file, e);
    }
  }

  /**
   * Installs the chart's admission policies for runner Jobs ({@link #ADMISSION_POLICIES_RESOURCE}),
   * so that this API behaves like a cluster with the chart installed: a runner Job is created
   * suspended whatever its spec says, and only the operator may unsuspend it.
   */
  public void installAdmissionPolicies() {
    try (InputStream in =
        EmbeddedKubernetes.class.getResourceAsStream(ADMISSION_POLICIES_RESOURCE)) {
      if (in == null) {
        throw new IllegalStateException(
            ADMISSION_POLICIES_RESOURCE + " is missing from the classpath: build with mvn package");
      }
      installAdmissionPolicies(in, "leasehold's admission policies");
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /**
   * Creates, or replaces, the admission policies and bindings of a (multi-document) YAML manifest
   * (kinds MutatingAdmissionPolicy, ValidatingAdmissionPolicy and their bindings, any version).
   */
  public void installAdmissionPolicies(InputStream manifest, String source) {
    List<GenericKubernetesResource> items = new ArrayList<>();
    com.fasterxml.jackson.databind.ObjectMapper yaml =
        new com.fasterxml.jackson.databind.ObjectMapper(
            new com.fasterxml.jackson.dataformat.yaml.YAMLFactory());
    try (var docs =
        yaml.readerFor(com.fasterxml.jackson.databind.JsonNode.class)
            .<com.fasterxml.jackson.databind.JsonNode>readValues(manifest)) {
      while (docs.hasNext()) {
        com.fasterxml.jackson.databind.JsonNode doc = docs.next();
        if (doc != null && doc.isObject() && !doc.isEmpty()) {
          items.add(yaml.treeToValue(doc, GenericKubernetesResource.class));
        }
      }
    } catch (IOException e) {
      throw new IllegalArgumentException(source + ": not a YAML manifest: " + e.getMessage(), e);
    }
    for (GenericKubernetesResource item : items) {
      String kind = item.getKind();
      String plural = kind.toLowerCase(java.util.Locale.ROOT).replaceFirst("y$", "ie") + "s";
      String[] groupVersion = item.getApiVersion().split("/", 2);
      if (!kind.endsWith("AdmissionPolicy") && !kind.endsWith("AdmissionPolicyBinding")
          || groupVersion.length != 2
          || !AdmissionPolicies.GROUP.equals(groupVersion[0])) {
        throw new IllegalArgumentException(
            source + ": " + item.getApiVersion() + " " + kind + " is not an admission policy");
      }
      var resources =
          client.genericKubernetesResources(
              new io.fabric8.kubernetes.client.dsl.base.ResourceDefinitionContext.Builder()
                  .withGroup(groupVersion[0])
                  .withVersion(groupVersion[1])
                  .withKind(kind)
                  .withPlural(plural)
                  .withNamespaced(false)
                  .build());
      try {
        resources.resource(item).create();
      } catch (KubernetesClientException e) {
        if (e.getCode() != 409) {
          throw new IllegalArgumentException(
              source
                  + ": "
                  + kind
                  + " "
                  + item.getMetadata().getName()
                  + " refused: "
                  + e.getMessage(),
              e);
        }
        item.getMetadata().setResourceVersion(null);
        resources.resource(item).update();
      }
    }
  }

  private HasMetadata createOrReplace(HasMetadata item) {
    try {
      return client.resource(item).create();
    } catch (KubernetesClientException e) {
      if (e.getCode() != 409) {
        throw e;
      }
      item.getMetadata().setResourceVersion(null);
      return client.resource(item).update();
    }
  }

  /** The namespace every object without one goes to exists, as it does in a cluster. */
  private void createDefaultNamespace() {
    client
        .namespaces()
        .resource(
            new io.fabric8.kubernetes.api.model.NamespaceBuilder()
                .withNewMetadata()
                .withName(DEFAULT_NAMESPACE)
                .endMetadata()
                .withNewStatus()
                .withPhase("Active")
                .endStatus()
                .build())
        .create();
  }

  private void installCrd() {
    try (InputStream in = EmbeddedKubernetes.class.getResourceAsStream(CRD_RESOURCE)) {
      if (in == null) {
        throw new IllegalStateException(
            CRD_RESOURCE + " is missing from the classpath: build with mvn package");
      }
      apply(in, "TerraformState CRD");
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  @Override
  public void close() {
    client.close();
    server.destroy();
  }
}
