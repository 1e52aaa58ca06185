package io.leasehold.chart;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.fasterxml.jackson.dataformat.yaml.YAMLGenerator;
import com.marcnuri.helm.Helm;
import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.batch.v1.JobBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.leasehold.embedded.EmbeddedKubernetes;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The chart's admission policies for runner Jobs, rendered by the real Helm 3 (helm-java) and then
 * evaluated: installed into the embedded API, whose admission applies them as an API server does,
 * and exercised with Jobs created and changed by the operator's ServiceAccount and by others.
 */
class AdmissionPolicyChartTest {

  private static final Path ROOT =
      Path.of(System.getProperty("leasehold.projectRoot")).toAbsolutePath().normalize();
  private static final Path CHART = ROOT.resolve("charts/leasehold");
  private static final String RELEASE = "leasehold";
  private static final String NAMESPACE = "leasehold-system";
  private static final String OPERATOR = "system:serviceaccount:leasehold-system:leasehold";
  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());
  private static final String POLICY_KINDS = "AdmissionPolicy";
  private static final String BOTH_V1 =
      "admissionPolicy: {mutating: {apiVersion: v1}, validating: {apiVersion: v1}}\n";

  @TempDir static Path tmp;
  private EmbeddedKubernetes api;

  @AfterEach
  void stop() {
    if (api != null) {
      api.close();
    }
  }

  private static String template(String values) throws IOException {
    Path file = Files.createTempFile(tmp, "values", ".yaml");
    Files.writeString(file, values, StandardCharsets.UTF_8);
    return new Helm(CHART)
        .template()
        .withName(RELEASE)
        .withNamespace(NAMESPACE)
        .withValuesFile(file)
        .withKubeVersion(HelmChartTest.KUBE_VERSION)
        .call();
  }

  /** The admission policies and bindings of one rendering. */
  private static List<JsonNode> policies(String values) throws IOException {
    List<JsonNode> docs = new ArrayList<>();
    try (var it = YAML.readerFor(JsonNode.class).<JsonNode>readValues(template(values))) {
      while (it.hasNext()) {
        JsonNode doc = it.next();
        if (doc != null && doc.path("kind").asText().contains(POLICY_KINDS)) {
          docs.add(doc);
        }
      }
    }
    return docs;
  }

  private static List<String> kinds(List<JsonNode> docs) {
    return docs.stream()
        .map(d -> d.path("apiVersion").asText() + " " + d.path("kind").asText())
        .toList();
  }

  /** An embedded API with the policies {@code values} render, as the cluster would hold them. */
  private EmbeddedKubernetes clusterWith(String values) throws IOException {
    List<JsonNode> rendered = policies(values);
    assertThat(rendered).as("policies rendered for %s", values).isNotEmpty();
    api = EmbeddedKubernetes.start(0);
    StringBuilder docs = new StringBuilder();
    for (JsonNode doc : rendered) {
      docs.append("---\n").append(YAML.writeValueAsString(doc));
    }
    api.installAdmissionPolicies(
        new ByteArrayInputStream(docs.toString().getBytes(StandardCharsets.UTF_8)), "rendered");
    return api;
  }

  private static Job runner(String name, String namespace, Boolean suspend) {
    return new JobBuilder()
        .withNewMetadata()
        .withName(name)
        .withNamespace(namespace)
        .addToLabels("leasehold.io/state", "network")
        .endMetadata()
        .withNewSpec()
        .withSuspend(suspend)
        .withBackoffLimit(0)
        .withNewTemplate()
        .withNewSpec()
        .withRestartPolicy("Never")
        .addNewContainer()
        .withName("terraform")
        .withImage("hashicorp/terraform:1.11")
        .endContainer()
        .endSpec()
        .endTemplate()
        .endSpec()
        .build();
  }

  private static Job create(KubernetesClient client, Job job) {
    return client.batch().v1().jobs().resource(job).create();
  }

  private static Job unsuspend(KubernetesClient client, Job job) {
    return client
        .batch()
        .v1()
        .jobs()
        .inNamespace(job.getMetadata().getNamespace())
        .withName(job.getMetadata().getName())
        .patch(
            PatchContext.of(PatchType.JSON),
            "[{\"op\":\"replace\",\"path\":\"/spec/suspend\",\"value\":false}]");
  }

  @Test
  @DisplayName(
      "Where the cluster serves neither policy API (helm template knows of none), no policy is"
          + " rendered; disabled, none either")
  void gatedOnServedApis() throws IOException {
    assertThat(policies("")).isEmpty();
    assertThat(
            policies(
                "admissionPolicy: {mutating: {enabled: false, apiVersion: v1},"
                    + " validating: {enabled: false, apiVersion: v1}}\n"))
        .isEmpty();
  }

  @ParameterizedTest(name = "apiVersion {0}")
  @ValueSource(strings = {"v1", "v1beta1"})
  @DisplayName(
      "A forced apiVersion renders both policies and their bindings in that version, each binding"
          + " naming its policy")
  void forcedVersion(String version) throws IOException {
    List<JsonNode> docs =
        policies(
            "admissionPolicy: {mutating: {apiVersion: "
                + version
                + "}, validating: {apiVersion: "
                + version
                + "}}\n");
    String group = "admissionregistration.k8s.io/" + version;
    assertThat(kinds(docs))
        .containsExactlyInAnyOrder(
            group + " MutatingAdmissionPolicy",
            group + " MutatingAdmissionPolicyBinding",
            group + " ValidatingAdmissionPolicy",
            group + " ValidatingAdmissionPolicyBinding");
    for (JsonNode binding : docs) {
      if (binding.path("kind").asText().endsWith("Binding")) {
        String policyKind = binding.path("kind").asText().replace("Binding", "");
        assertThat(
                docs.stream()
                    .filter(d -> d.path("kind").asText().equals(policyKind))
                    .map(d -> d.at("/metadata/name").asText()))
            .containsExactly(binding.at("/spec/policyName").asText());
      }
    }
  }

  @Test
  @DisplayName(
      "The mutating policy alone can be chosen: only it is rendered, and the other keeps its"
          + " own version")
  void versionsChosenApart() throws IOException {
    assertThat(
            kinds(
                policies(
                    "admissionPolicy: {mutating: {apiVersion: v1beta1}, validating: {enabled:"
                        + " false}}\n")))
        .containsExactlyInAnyOrder(
            "admissionregistration.k8s.io/v1beta1 MutatingAdmissionPolicy",
            "admissionregistration.k8s.io/v1beta1 MutatingAdmissionPolicyBinding");
  }

  @ParameterizedTest(name = "apiVersion {0}")
  @ValueSource(strings = {"v1", "v1beta1"})
  @DisplayName(
      "As rendered, a runner Job created without suspend, or with suspend: false, is stored"
          + " suspended; other Jobs are left alone")
  void createdSuspended(String version) throws IOException {
    clusterWith(
        "admissionPolicy: {mutating: {apiVersion: "
            + version
            + "}, validating: {apiVersion: "
            + version
            + "}}\n");
    try (KubernetesClient anyone = api.newClient(null)) {
      assertThat(create(anyone, runner("no-suspend", "default", null)).getSpec().getSuspend())
          .isTrue();
      assertThat(create(anyone, runner("suspend-false", "default", false)).getSpec().getSuspend())
          .isTrue();
      Job plain = runner("plain", "default", false);
      plain.getMetadata().setLabels(Map.of("app", "web"));
      assertThat(create(anyone, plain).getSpec().getSuspend()).isFalse();
      assertThat(
              anyone
                  .batch()
                  .v1()
                  .jobs()
                  .inNamespace("default")
                  .withName("no-suspend")
                  .get()
                  .getSpec()
                  .getSuspend())
          .isTrue();
    }
  }

  /** A runner Job as a CronJob creates it: owned by CronJob {@code cronJob}. */
  private static Job fromCronJob(String name, String cronJob, String kind) {
    return new JobBuilder(runner(name, "default", null))
        .editMetadata()
        .addNewOwnerReference()
        .withApiVersion("batch".equals(kind) ? "batch/v1" : "example.io/v1")
        .withKind("batch".equals(kind) ? "CronJob" : kind)
        .withName(cronJob)
        .withUid("00000000-0000-0000-0000-0000000000c1")
        .withController(true)
        .endOwnerReference()
        .endMetadata()
        .build();
  }

  private static Map<String, String> labels(Job job) {
    return job.getMetadata().getLabels();
  }

  @ParameterizedTest(name = "apiVersion {0}")
  @ValueSource(strings = {"v1", "v1beta1"})
  @DisplayName(
      "As rendered, a runner Job a CronJob created is stored suspended and labelled"
          + " leasehold.io/run-group with the CronJob's name, unless it has that label; a Job"
          + " without ownerReferences, or owned by something else, is stored suspended, unlabelled")
  void cronJobRunsShareARunGroup(String version) throws IOException {
    clusterWith(
        "admissionPolicy: {mutating: {apiVersion: "
            + version
            + "}, validating: {apiVersion: "
            + version
            + "}}\n");
    try (KubernetesClient anyone = api.newClient(null)) {
      Job nightly = create(anyone, fromCronJob("nightly-28000000", "nightly", "batch"));
      assertThat(labels(nightly))
          .containsEntry("leasehold.io/run-group", "nightly")
          .containsEntry("leasehold.io/state", "network");
      assertThat(nightly.getSpec().getSuspend()).isTrue();

      Job chosen = fromCronJob("chosen-28000000", "chosen", "batch");
      chosen.getMetadata().getLabels().put("leasehold.io/run-group", "network-apply");
      assertThat(labels(create(anyone, chosen)))
          .containsEntry("leasehold.io/run-group", "network-apply");

      Job plain = create(anyone, runner("by-hand", "default", null));
      assertThat(plain.getSpec().getSuspend()).isTrue();
      assertThat(labels(plain)).doesNotContainKey("leasehold.io/run-group");

      Job owned = create(anyone, fromCronJob("workflow-step", "wf", "Workflow"));
      assertThat(owned.getSpec().getSuspend()).isTrue();
      assertThat(labels(owned)).doesNotContainKey("leasehold.io/run-group");
    }
  }

  @Test
  @DisplayName(
      "With admissionPolicy.mutating.cronJobRunGroup false, a CronJob's runner Job is stored"
          + " suspended without a run group")
  void cronJobRunGroupOff() throws IOException {
    clusterWith(
        "admissionPolicy: {mutating: {apiVersion: v1, cronJobRunGroup: false},"
            + " validating: {apiVersion: v1}}\n");
    try (KubernetesClient anyone = api.newClient(null)) {
      Job nightly = create(anyone, fromCronJob("nightly-28000000", "nightly", "batch"));
      assertThat(nightly.getSpec().getSuspend()).isTrue();
      assertThat(labels(nightly)).doesNotContainKey("leasehold.io/run-group");
    }
  }

  @Test
  @DisplayName(
      "As rendered, a waiting runner Job can be unsuspended by the operator's ServiceAccount"
          + " only; anyone else is refused with 403 naming the operator, and the Job stays"
          + " suspended")
  void onlyTheOperatorUnsuspends() throws IOException {
    clusterWith(BOTH_V1);
    try (KubernetesClient anyone = api.newClient("system:serviceaccount:infra:ci");
        KubernetesClient operator = api.newClient(OPERATOR)) {
      Job waiting = create(anyone, runner("waiting", "default", true));

      assertThatThrownBy(() -> unsuspend(anyone, waiting))
          .isInstanceOfSatisfying(
              KubernetesClientException.class,
              e -> {
                assertThat(e.getCode()).isEqualTo(403);
                assertThat(e.getStatus().getMessage())
                    .contains("ValidatingAdmissionPolicy")
                    .contains("only leasehold (" + OPERATOR + ")")
                    .contains("delete it");
              });
      assertThat(job(anyone, "waiting").getSpec().getSuspend()).isTrue();

      assertThat(unsuspend(operator, waiting).getSpec().getSuspend()).isFalse();
      // Once admitted, the Job is the operator's to run; others may change it again.
      Job admitted = job(anyone, "waiting");
      admitted.getMetadata().setAnnotations(Map.of("note", "edited"));
      assertThat(
              anyone.batch().v1().jobs().resource(admitted).update().getMetadata().getAnnotations())
          .containsEntry("note", "edited");
    }
  }

  @Test
  @DisplayName(
      "As rendered, nobody but the operator may take the label off a waiting runner Job (it"
          + " would then run unqueued), while other changes and deletion stay allowed")
  void labelStaysOnWaitingJobs() throws IOException {
    clusterWith(BOTH_V1);
    try (KubernetesClient anyone = api.newClient(null)) {
      create(anyone, runner("labelled", "default", true));
      KubernetesClientException refused =
          org.junit.jupiter.api.Assertions.assertThrows(
              KubernetesClientException.class,
              () ->
                  anyone
                      .batch()
                      .v1()
                      .jobs()
                      .inNamespace("default")
                      .withName("labelled")
                      .patch(
                          PatchContext.of(PatchType.JSON_MERGE),
                          "{\"metadata\":{\"labels\":{\"leasehold.io/state\":null}}}"));
      assertThat(refused.getCode()).isEqualTo(403);
      assertThat(job(anyone, "labelled").getMetadata().getLabels())
          .containsEntry("leasehold.io/state", "network");

      Job moved =
          anyone
              .batch()
              .v1()
              .jobs()
              .inNamespace("default")
              .withName("labelled")
              .patch(
                  PatchContext.of(PatchType.JSON_MERGE),
                  "{\"metadata\":{\"labels\":{\"leasehold.io/state\":\"dns\",\"team\":\"a\"}}}");
      assertThat(moved.getMetadata().getLabels())
          .containsEntry("leasehold.io/state", "dns")
          .containsEntry("team", "a");
      assertThat(anyone.batch().v1().jobs().inNamespace("default").withName("labelled").delete())
          .isNotEmpty();
    }
  }

  @Test
  @DisplayName(
      "Without the mutating policy (clusters before 1.34), the validating policy refuses a runner"
          + " Job created unsuspended with a message saying to add suspend: true")
  void withoutMutatingPolicyUnsuspendedCreateIsRefused() throws IOException {
    clusterWith("admissionPolicy: {mutating: {enabled: false}, validating: {apiVersion: v1}}\n");
    try (KubernetesClient anyone = api.newClient(null)) {
      KubernetesClientException refused =
          org.junit.jupiter.api.Assertions.assertThrows(
              KubernetesClientException.class,
              () -> create(anyone, runner("careless", "default", null)));
      assertThat(refused.getCode()).isEqualTo(422);
      assertThat(refused.getStatus().getMessage())
          .contains("must be created suspended")
          .contains("`suspend: true`")
          .contains("`spec.jobTemplate.spec.suspend: true`");
      assertThat(create(anyone, runner("careful", "default", true)).getSpec().getSuspend())
          .isTrue();
    }
  }

  @Test
  @DisplayName(
      "With watchNamespaces, the bindings apply in those namespaces only: elsewhere a runner Job"
          + " is stored as written")
  void bindingsFollowWatchedNamespaces() throws IOException {
    clusterWith("watchNamespaces: [team-a]\n" + BOTH_V1);
    try (KubernetesClient anyone = api.newClient(null)) {
      for (String ns : List.of("team-a", "team-b")) {
        anyone
            .namespaces()
            .resource(
                new NamespaceBuilder()
                    .withNewMetadata()
                    .withName(ns)
                    .addToLabels("kubernetes.io/metadata.name", ns)
                    .endMetadata()
                    .build())
            .create();
      }
      assertThat(create(anyone, runner("watched", "team-a", null)).getSpec().getSuspend()).isTrue();
      assertThat(create(anyone, runner("unwatched", "team-b", false)).getSpec().getSuspend())
          .isFalse();
    }
  }

  @ParameterizedTest(name = "{0} is refused naming {1}")
  @DisplayName("Wrong admission policy values are refused with a message naming the field")
  @CsvSource(
      delimiter = '|',
      value = {
        "'admissionPolicy: {mutating: {apiVersion: v2}}' | apiVersion",
        "'admissionPolicy: {validating: {apiVersion: v1alpha1}}' | apiVersion",
        "'admissionPolicy: {validating: {validationActions: [Reject]}}' | validationActions",
        "'admissionPolicy: {validating: {validationActions: [Deny, Warn]}}' | validationActions",
        "'admissionPolicy: {enabled: true}' | enabled",
        "'admissionPolicy: {mutating: {cronJobRunGroup: yes-please}}' | cronJobRunGroup",
      })
  void refused(String values, String field) {
    assertThatThrownBy(() -> template(values + "\n"))
        .isInstanceOf(IllegalStateException.class)
        .hasMessageContaining("schema")
        .hasMessageContaining(field);
  }

  /**
   * The embedded API ({@code run --embedded}) installs the chart's policies from a copy in the jar;
   * it must be what Helm renders for the release {@code leasehold} in {@code leasehold-system}.
   */
  @Test
  @DisplayName(
      "The policies run --embedded installs are the chart's, as Helm renders them for the"
          + " release leasehold in leasehold-system")
  void embeddedPoliciesAreTheChartsPolicies() throws IOException {
    List<JsonNode> rendered = new ArrayList<>();
    for (JsonNode doc : policies(BOTH_V1)) {
      ((ObjectNode) doc.path("metadata")).remove("labels");
      rendered.add(doc);
    }
    List<JsonNode> bundled = new ArrayList<>();
    try (InputStream in =
            EmbeddedKubernetes.class.getResourceAsStream(
                EmbeddedKubernetes.ADMISSION_POLICIES_RESOURCE);
        var it = YAML.readerFor(JsonNode.class).<JsonNode>readValues(in)) {
      while (it.hasNext()) {
        JsonNode doc = it.next();
        if (doc != null && !doc.isEmpty()) {
          bundled.add(doc);
        }
      }
    }
    if (!bundled.equals(rendered)) {
      Path fresh = ROOT.resolve("operator/target/admission-policies.yaml");
      Files.writeString(fresh, bundledFile(rendered), StandardCharsets.UTF_8);
      throw new AssertionError(
          "embedded-api/src/main/resources"
              + EmbeddedKubernetes.ADMISSION_POLICIES_RESOURCE
              + " differs from the chart's policies; the rendering is in "
              + fresh
              + ": copy it over the resource");
    }
    assertThat(rendered).hasSize(4);
    assertThat(rendered.toString()).contains(EmbeddedKubernetes.OPERATOR_USER);
  }

  private static String bundledFile(List<JsonNode> docs) throws IOException {
    ObjectMapper writer =
        new ObjectMapper(
            new YAMLFactory()
                .disable(YAMLGenerator.Feature.WRITE_DOC_START_MARKER)
                .enable(YAMLGenerator.Feature.MINIMIZE_QUOTES)
                .enable(YAMLGenerator.Feature.LITERAL_BLOCK_STYLE));
    StringBuilder out =
        new StringBuilder(
            "# The chart's admission policies for runner Jobs as `helm template leasehold"
                + " charts/leasehold\n"
                + "# --namespace leasehold-system` renders them with both apiVersions v1 (labels"
                + " left out).\n"
                + "# run --embedded installs them. AdmissionPolicyChartTest checks this copy;"
                + " do not edit it.\n");
    for (JsonNode doc : docs) {
      out.append("---\n").append(writer.writeValueAsString(doc));
    }
    return out.toString();
  }

  private static Job job(KubernetesClient client, String name) {
    return client.batch().v1().jobs().inNamespace("default").withName(name).get();
  }
}
