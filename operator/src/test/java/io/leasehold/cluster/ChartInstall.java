package io.leasehold.cluster;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.marcnuri.helm.Helm;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.apps.DeploymentSpec;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.utils.KubernetesSerialization;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/**
 * The Helm chart ({@code charts/leasehold}) rendered by the real Helm 3 and applied to the real
 * cluster: CRD, ServiceAccount, RBAC, admission policies and runner RBAC, exactly as a user's
 * {@code helm install} would create them, so the real authorizer and the real admission chain judge
 * the operator and the runners by the chart's own rules.
 *
 * <p>The operator itself runs as a process on this machine ({@link ClusterOperator}) with the
 * chart's ServiceAccount and the arguments of the chart's Deployment, so the workload objects
 * (Deployment, Service, PodDisruptionBudget, NetworkPolicy) are not applied: nothing would pull the
 * image on a fake node.
 */
public final class ChartInstall {

  public static final String RELEASE = "leasehold";
  public static final String NAMESPACE = "leasehold-system";
  public static final String RUNNER = "terraform-runner";
  public static final String KUBE_VERSION = "v1.37.2";

  private static final Set<String> WORKLOADS =
      Set.of("Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor");
  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());
  private static final KubernetesSerialization KUBE = new KubernetesSerialization();

  private final List<JsonNode> documents;

  private ChartInstall(List<JsonNode> documents) {
    this.documents = documents;
  }

  /** One {@code runnerRbac} entry of the chart's values: {@code readWrite} or {@code readOnly}. */
  public record Runner(String namespace, String serviceAccount, String access) {}

  /**
   * Renders the chart with runner access ({@code runnerRbac}, read-write, ServiceAccount {@value
   * #RUNNER} created) in each of {@code runnerNamespaces}, and applies it with server-side apply.
   */
  public static ChartInstall apply(RealCluster cluster, String... runnerNamespaces) {
    List<Runner> runners = new ArrayList<>();
    for (String ns : runnerNamespaces) {
      runners.add(new Runner(ns, RUNNER, "readWrite"));
    }
    return apply(cluster, runners);
  }

  /**
   * Renders the chart with these {@code runnerRbac} entries (each ServiceAccount created), and
   * applies it with server-side apply.
   */
  public static ChartInstall apply(RealCluster cluster, List<Runner> runners) {
    StringBuilder values = new StringBuilder();
    values.append("admissionPolicy:\n");
    values.append("  mutating: {enabled: true, apiVersion: v1}\n");
    values.append("  validating: {enabled: true, apiVersion: v1}\n");
    values.append("runnerRbac:\n");
    for (Runner runner : runners) {
      values
          .append("  - namespace: ")
          .append(runner.namespace())
          .append("\n    serviceAccount: ")
          .append(runner.serviceAccount())
          .append("\n    access: ")
          .append(runner.access())
          .append("\n    createServiceAccount: true\n");
    }
    if (runners.isEmpty()) {
      values.setLength(values.length() - "runnerRbac:\n".length());
      values.append("runnerRbac: []\n");
    }
    ChartInstall install = new ChartInstall(render(values.toString()));
    KubernetesClient admin = cluster.admin();
    admin
        .namespaces()
        .resource(
            new NamespaceBuilder().withNewMetadata().withName(NAMESPACE).endMetadata().build())
        .serverSideApply();
    for (JsonNode doc : install.documents) {
      if (WORKLOADS.contains(doc.path("kind").asText())) {
        continue;
      }
      GenericKubernetesResource resource = KUBE.convertValue(doc, GenericKubernetesResource.class);
      admin.resource(resource).fieldManager("helm").forceConflicts().serverSideApply();
    }
    return install;
  }

  /** The chart's Deployment: the arguments and environment the operator runs with. */
  public Deployment deployment() {
    return documents.stream()
        .filter(d -> "Deployment".equals(d.path("kind").asText()))
        .map(d -> KUBE.convertValue(d, Deployment.class))
        .findFirst()
        .orElseThrow(() -> new AssertionError("the chart rendered no Deployment"));
  }

  /** The operator's container arguments as the chart renders them. */
  public List<String> operatorArgs() {
    DeploymentSpec spec = deployment().getSpec();
    return new ArrayList<>(spec.getTemplate().getSpec().getContainers().get(0).getArgs());
  }

  /** The ServiceAccount the chart runs the operator as. */
  public String serviceAccount() {
    return deployment().getSpec().getTemplate().getSpec().getServiceAccountName();
  }

  private static List<JsonNode> render(String values) {
    try {
      Path file = Files.createTempFile("leasehold-values", ".yaml");
      Files.writeString(file, values, StandardCharsets.UTF_8);
      String manifest =
          new Helm(RealCluster.projectRoot().resolve("charts/leasehold"))
              .template()
              .withName(RELEASE)
              .withNamespace(NAMESPACE)
              .withKubeVersion(KUBE_VERSION)
              .withValuesFile(file)
              .call();
      Files.delete(file);
      List<JsonNode> docs = new ArrayList<>();
      try (var it = YAML.readerFor(JsonNode.class).<JsonNode>readValues(manifest)) {
        while (it.hasNext()) {
          JsonNode doc = it.next();
          if (doc != null && !doc.isNull() && !doc.isEmpty()) {
            docs.add(doc);
          }
        }
      }
      return docs;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** Waits until the API server serves the TerraformState resource (the CRD is established). */
  public static void awaitCrd(KubernetesClient admin) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    while (true) {
      var crd =
          admin
              .apiextensions()
              .v1()
              .customResourceDefinitions()
              .withName("terraformstates.leasehold.io")
              .get();
      boolean established =
          crd != null
              && crd.getStatus() != null
              && crd.getStatus().getConditions().stream()
                  .anyMatch(c -> "Established".equals(c.getType()) && "True".equals(c.getStatus()));
      if (established) {
        return;
      }
      if (System.nanoTime() > deadline) {
        throw new AssertionError("the TerraformState CRD was not established within 60 s");
      }
      Thread.sleep(100);
    }
  }
}
