package io.leasehold.chart;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.marcnuri.helm.Helm;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.client.ConfigBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.fabric8.kubernetes.client.server.mock.KubernetesMockServer;
import io.fabric8.mockwebserver.http.RecordedRequest;
import io.leasehold.api.DeletionPolicy;
import io.leasehold.api.TerraformState;
import io.leasehold.backend.HttpBackend;
import io.leasehold.backend.KubernetesAccess;
import io.leasehold.backend.KubernetesJobPods;
import io.leasehold.cli.Replica;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.lock.LockInfo;
import io.leasehold.operator.CrdCompatibility;
import io.leasehold.operator.LeaseholdOperator;
import io.leasehold.support.RunnerJobFixtures;
import io.leasehold.support.TerraformStates;
import io.leasehold.tls.BackendTls;
import io.leasehold.tls.CaPublisher;
import io.leasehold.tls.TlsSource;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * Records every request the operator and its backend send to the API while they go through their
 * work, and checks each is granted by the chart's RBAC, and that the chart grants nothing the code
 * does not use.
 */
class RbacCoversCallsTest {

  private static final String CALLER = "X-Leasehold-Test-Caller";
  private static final ObjectMapper JSON = new ObjectMapper();

  /** Granted and used, but not reached by this scenario; each with the code that uses it. */
  private static final Map<String, String> NOT_EXERCISED =
      Map.of(
          "leasehold.io/terraformstates:update",
              "the SDK may update the resource to remove a finalizer",
          "leasehold.io/terraformstates/status:get", "status reads by the SDK",
          "leasehold.io/terraformstates/status:update", "the SDK's status updates",
          "leasehold.io/terraformstates:get",
              "the backend resolves addresses from this call on real clusters",
          "core/secrets:update", "a state update in place (covered when the state already exists)");

  /** Every request the operator and backend sent during the scenario, in order. */
  private static final java.util.List<RecordedRequest> CALLS = new java.util.ArrayList<>();

  @org.junit.jupiter.api.BeforeAll
  static void recordScenario() throws Exception {
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient operatorClient =
            new KubernetesClientBuilder()
                .withConfig(
                    new ConfigBuilder(api.clientConfig())
                        .withCustomHeaders(Map.of(CALLER, "operator"))
                        .build())
                .build();
        KubernetesClient user = api.newClient()) {
      KubernetesMockServer server = api.mockServer();
      server
          .expect()
          .post()
          .withPath("/apis/authentication.k8s.io/v1/tokenreviews")
          .andReply(200, r -> tokenReview(r.getBody().readUtf8()))
          .always();
      server
          .expect()
          .post()
          .withPath("/apis/authorization.k8s.io/v1/subjectaccessreviews")
          .andReply(200, r -> allow(r.getBody().readUtf8()))
          .always();
      try (Replica backend =
          Replica.start(
              operatorClient,
              new LeaseholdOperator.Options(Set.of(), Optional.of(NAMESPACE), "rbac-test"),
              new Replica.Backend(
                  new KubernetesAccess(operatorClient),
                  new KubernetesJobPods(operatorClient),
                  new HttpBackend.Config("127.0.0.1", 0, Duration.ofMinutes(1)),
                  64L * 1024 * 1024))) {
        scenario(user, backend.url() + NAMESPACE + "/rbac");
        tlsAndCrd(operatorClient, user);
      }
      RecordedRequest r;
      while ((r = server.takeRequest(10, TimeUnit.MILLISECONDS)) != null) {
        if ("operator".equals(r.getHeader(CALLER))) {
          CALLS.add(r);
        }
      }
    }
  }

  @Test
  @DisplayName(
      "Every API call the operator and backend make is granted by the chart's ClusterRole (by"
          + " name where the rule names objects), and the ClusterRole grants nothing unused")
  void rbacMatchesTheCallsMade() throws Exception {
    Set<String> granted = grantedByChart();
    Set<String> used = new TreeSet<>();
    Set<String> notGranted = new TreeSet<>();
    for (RecordedRequest r : CALLS) {
      String unscoped = permission(r);
      String scoped = unscoped + "[" + objectName(r) + "]";
      if (granted.contains(unscoped)) {
        used.add(unscoped);
      } else if (granted.contains(scoped)) {
        used.add(scoped);
      } else {
        notGranted.add(objectName(r).isEmpty() ? unscoped : scoped);
      }
    }
    System.out.println("API calls made by the operator: " + used);
    assertThat(notGranted).as("calls the chart's ClusterRole does not grant").isEmpty();
    Set<String> unused = new TreeSet<>(granted);
    unused.removeAll(used);
    unused.removeAll(NOT_EXERCISED.keySet());
    assertThat(unused)
        .as("granted but never used: remove from the chart or exercise here")
        .isEmpty();
  }

  @Test
  @DisplayName(
      "Every update or delete of a lock Lease or a state Secret carries the resourceVersion it"
          + " read, so a real API server refuses it rather than losing a concurrent change")
  void everyLeaseAndSecretChangeIsConditional() throws Exception {
    int checked = 0;
    java.util.List<String> unconditional = new java.util.ArrayList<>();
    for (RecordedRequest r : CALLS) {
      String path = r.getPath();
      boolean leaseOrSecret = path.contains("/leases/") || path.contains("/secrets/");
      if (!leaseOrSecret || path.contains("/leases/" + LeaseholdOperator.LEADER_LEASE)) {
        continue;
      }
      String body = r.getBody() == null ? "" : r.getBody().readUtf8();
      JsonNode json = body.isBlank() ? JSON.createObjectNode() : JSON.readTree(body);
      boolean conditional =
          switch (r.getMethod()) {
            case "PUT" -> !json.at("/metadata/resourceVersion").asText("").isEmpty();
            case "DELETE" -> !json.at("/preconditions/resourceVersion").asText("").isEmpty();
            case "PATCH" ->
                body.contains("/metadata/resourceVersion")
                    || !json.at("/metadata/resourceVersion").asText("").isEmpty();
            default -> true;
          };
      if (!"GET".equals(r.getMethod()) && !"POST".equals(r.getMethod())) {
        checked++;
        if (!conditional) {
          unconditional.add(r.getMethod() + " " + path);
        }
      }
    }
    System.out.println("Lease and Secret updates and deletes checked: " + checked);
    assertThat(checked)
        .as("the scenario updates and deletes Leases and Secrets")
        .isGreaterThanOrEqualTo(8);
    assertThat(unconditional).isEmpty();
  }

  private static void scenario(KubernetesClient user, String state) throws Exception {
    TerraformState s = new TerraformState();
    s.getMetadata().setName("rbac");
    s.getMetadata().setNamespace(NAMESPACE);
    s.getSpec().setDeletionPolicy(DeletionPolicy.Delete);
    user.resource(s).create();
    Job first = RunnerJobFixtures.create(user, "rbac-1", "rbac");
    RunnerJobFixtures.create(user, "rbac-2", "rbac");
    await()
        .atMost(Duration.ofSeconds(30))
        .until(() -> RunnerJobFixtures.running(RunnerJobFixtures.get(user, "rbac-1")));
    // Two waiting Jobs of one run group: the older is skipped, and deleted once the newer is gone.
    for (String name : new String[] {"rbac-g1", "rbac-g2"}) {
      Job grouped = RunnerJobFixtures.runner(name, "rbac", true);
      grouped.getMetadata().getLabels().put("leasehold.io/run-group", "g");
      user.resource(grouped).create();
    }
    await()
        .atMost(Duration.ofSeconds(30))
        .until(
            () ->
                "true"
                    .equals(
                        RunnerJobFixtures.get(user, "rbac-g1")
                            .getMetadata()
                            .getLabels()
                            .get("leasehold.io/skipped")));
    user.batch().v1().jobs().inNamespace(NAMESPACE).withName("rbac-g2").delete();
    await()
        .atMost(Duration.ofSeconds(30))
        .until(() -> RunnerJobFixtures.get(user, "rbac-g1") == null);
    user.resource(
            new PodBuilder()
                .withNewMetadata()
                .withName("runner-pod")
                .withNamespace(NAMESPACE)
                .addNewOwnerReference()
                .withApiVersion("batch/v1")
                .withKind("Job")
                .withName("rbac-1")
                .withUid(first.getMetadata().getUid())
                .endOwnerReference()
                .endMetadata()
                .build())
        .create();
    HttpClient http = HttpClient.newHttpClient();
    LockInfo mine =
        new LockInfo(
            "in-job", "OperationTypeApply", "", "r@pod", "1.11", "2026-11-26T00:00:00Z", "");
    send(http, "LOCK", state + "/lock", mine.toJson());
    send(http, "POST", state + "?ID=in-job", TerraformStates.stateJson(1, "lin-rbac", 1));
    send(http, "POST", state + "?ID=in-job", TerraformStates.stateJson(2, "lin-rbac", 2));
    send(http, "GET", state, null);
    send(http, "UNLOCK", state + "/lock", mine.toJson());
    RunnerJobFixtures.finish(user, "rbac-1", true);
    await()
        .atMost(Duration.ofSeconds(30))
        .until(() -> RunnerJobFixtures.running(RunnerJobFixtures.get(user, "rbac-2")));
    // A running Job that loses its label is followed by name; one deleted while its pod still
    // runs keeps the lock until the pod (listed by the Job's controller-uid label) is gone.
    RunnerJobFixtures.create(user, "rbac-3", "rbac");
    RunnerJobFixtures.finish(user, "rbac-2", true);
    await()
        .atMost(Duration.ofSeconds(30))
        .until(() -> RunnerJobFixtures.running(RunnerJobFixtures.get(user, "rbac-3")));
    Job third = RunnerJobFixtures.get(user, "rbac-3");
    user.resource(
            new PodBuilder()
                .withNewMetadata()
                .withName("rbac-3-pod")
                .withNamespace(NAMESPACE)
                .addToLabels(
                    io.leasehold.queue.JobAdmission.CONTROLLER_UID_LABEL,
                    third.getMetadata().getUid())
                .endMetadata()
                .build())
        .create();
    user.batch()
        .v1()
        .jobs()
        .inNamespace(NAMESPACE)
        .withName("rbac-3")
        .edit(
            j -> {
              j.getMetadata().getLabels().remove("leasehold.io/state");
              return j;
            });
    // Whatever the timing, the lock is released only after the Job was looked up by name (found,
    // or gone) and its pods were listed: the wait below covers both calls.
    user.batch().v1().jobs().inNamespace(NAMESPACE).withName("rbac-3").delete();
    user.pods().inNamespace(NAMESPACE).withName("rbac-3-pod").delete();
    await()
        .atMost(Duration.ofSeconds(30))
        .until(
            () ->
                user.leases()
                        .inNamespace(NAMESPACE)
                        .withName("lock-tfstate-default-rbac")
                        .get()
                        .getSpec()
                        .getHolderIdentity()
                    == null);
    user.resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName("rbac")
        .edit(
            t -> {
              t.getMetadata().setAnnotations(Map.of("leasehold.io/force-unlock", "nobody"));
              return t;
            });
    Thread.sleep(500);
    send(http, "DELETE", state, null);
    send(http, "POST", state, TerraformStates.stateJson(3, "lin-rbac", 1));
    user.resources(TerraformState.class).inNamespace(NAMESPACE).withName("rbac").delete();
    await()
        .atMost(Duration.ofSeconds(30))
        .until(
            () ->
                user.resources(TerraformState.class).inNamespace(NAMESPACE).withName("rbac").get()
                    == null);
    Thread.sleep(1500); // Events are written asynchronously
  }

  /**
   * What the chart's default install does besides: read the CRD, keep the self-signed certificate
   * in its Secret (create, then renew for another name) and publish the CA (create, then repair an
   * edited ConfigMap).
   */
  private static void tlsAndCrd(KubernetesClient operatorClient, KubernetesClient user)
      throws Exception {
    assertThat(CrdCompatibility.check(operatorClient).current()).isTrue();
    TlsSource.selfSigned(
            operatorClient, NAMESPACE, "leasehold-tls", List.of("leasehold"), Duration.ofDays(30))
        .load();
    BackendTls tls =
        BackendTls.load(
            TlsSource.selfSigned(
                operatorClient,
                NAMESPACE,
                "leasehold-tls",
                List.of("leasehold", "leasehold.leasehold-system.svc"),
                Duration.ofDays(30)),
            BackendTls.ClientAuthentication.NONE,
            Duration.ofMinutes(1));
    try (CaPublisher publisher =
        CaPublisher.start(
            operatorClient, tls, "leasehold-ca", Set.of(NAMESPACE), java.util.Optional.empty())) {
      await()
          .atMost(Duration.ofSeconds(20))
          .until(
              () ->
                  user.configMaps().inNamespace(NAMESPACE).withName("leasehold-ca").get() != null);
      user.configMaps()
          .inNamespace(NAMESPACE)
          .withName("leasehold-ca")
          .edit(
              c -> {
                c.setData(Map.of("ca.crt", "edited"));
                return c;
              });
      publisher.publishAll();
    }
    assertThat(
            user.configMaps()
                .inNamespace(NAMESPACE)
                .withName("leasehold-ca")
                .get()
                .getData()
                .get("ca.crt"))
        .isEqualTo(tls.ca().orElseThrow());
  }

  private static void send(HttpClient http, String method, String url, String body)
      throws Exception {
    String token =
        Base64.getEncoder().encodeToString("runner:runner-token".getBytes(StandardCharsets.UTF_8));
    http.send(
        HttpRequest.newBuilder(URI.create(url))
            .header("Authorization", "Basic " + token)
            .method(
                method,
                body == null
                    ? HttpRequest.BodyPublishers.noBody()
                    : HttpRequest.BodyPublishers.ofString(body))
            .build(),
        HttpResponse.BodyHandlers.ofString());
  }

  private static Object tokenReview(String body) {
    try {
      ObjectNode review = (ObjectNode) JSON.readTree(body);
      ObjectNode status = review.putObject("status").put("authenticated", true);
      status.set("audiences", review.path("spec").path("audiences"));
      ObjectNode user = status.putObject("user");
      user.put("username", "system:serviceaccount:default:runner");
      user.putObject("extra").putArray("authentication.kubernetes.io/pod-name").add("runner-pod");
      return review;
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }

  private static Object allow(String body) {
    try {
      ObjectNode review = (ObjectNode) JSON.readTree(body);
      review.putObject("status").put("allowed", true);
      return review;
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }

  /** The object a recorded request names, or "" for a list, watch or create. */
  static String objectName(RecordedRequest r) {
    String full = r.getPath();
    String path = full.contains("?") ? full.substring(0, full.indexOf('?')) : full;
    String[] p = path.split("/");
    int i = "api".equals(p[1]) ? 3 : 4;
    if (p.length > i + 1 && "namespaces".equals(p[i])) {
      i += 2;
    }
    return p.length > i + 1 ? p[i + 1] : "";
  }

  /** {@code group/resource[/subresource]:verb} of a recorded request. */
  static String permission(RecordedRequest r) {
    String full = r.getPath();
    String path = full.contains("?") ? full.substring(0, full.indexOf('?')) : full;
    String query = full.contains("?") ? full.substring(full.indexOf('?') + 1) : "";
    String[] p = path.split("/");
    int i;
    String group;
    if ("api".equals(p[1])) {
      group = "core";
      i = 3;
    } else {
      group = p[2];
      i = 4;
    }
    if (p.length > i + 1 && "namespaces".equals(p[i])) {
      i += 2;
    }
    String resource = p[i];
    boolean named = p.length > i + 1;
    if (p.length > i + 2) {
      resource += "/" + p[i + 2];
    }
    String verb =
        switch (r.getMethod()) {
          case "GET" -> named ? "get" : query.contains("watch=true") ? "watch" : "list";
          case "POST" -> "create";
          case "PUT" -> "update";
          case "PATCH" -> "patch";
          case "DELETE" -> named ? "delete" : "deletecollection";
          default -> r.getMethod().toLowerCase();
        };
    return group + "/" + resource + ":" + verb;
  }

  private static Set<String> grantedByChart() throws Exception {
    Path chart = Path.of(System.getProperty("leasehold.projectRoot"), "charts/leasehold");
    String manifest =
        new Helm(chart)
            .template()
            .withName("leasehold")
            .withNamespace(NAMESPACE)
            .withKubeVersion(HelmChartTest.KUBE_VERSION)
            .call();
    Set<String> granted = new TreeSet<>();
    try (var docs =
        new ObjectMapper(new YAMLFactory())
            .readerFor(JsonNode.class)
            .<JsonNode>readValues(manifest)) {
      while (docs.hasNext()) {
        JsonNode doc = docs.next();
        if (doc == null
            || !"ClusterRole".equals(doc.path("kind").asText())
            || !"operator"
                .equals(doc.at("/metadata/labels/app.kubernetes.io~1component").asText())) {
          continue;
        }
        for (JsonNode rule : doc.path("rules")) {
          List<String> names = new java.util.ArrayList<>();
          rule.path("resourceNames").forEach(n -> names.add("[" + n.asText() + "]"));
          if (names.isEmpty()) {
            names.add("");
          }
          for (JsonNode g : rule.path("apiGroups")) {
            for (JsonNode res : rule.path("resources")) {
              for (JsonNode v : rule.path("verbs")) {
                for (String name : names) {
                  granted.add(
                      (g.asText().isEmpty() ? "core" : g.asText())
                          + "/"
                          + res.asText()
                          + ":"
                          + v.asText()
                          + name);
                }
              }
            }
          }
        }
      }
    }
    return granted;
  }
}
