package io.leasehold.backend;

import static io.leasehold.backend.BackendClient.lockInfo;
import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.server.mock.KubernetesMockServer;
import io.leasehold.api.TerraformState;
import io.leasehold.lock.LeaseLock;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.RunnerJobFixtures;
import io.leasehold.support.TerraformStates;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Base64;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * The backend behind TokenReview and SubjectAccessReview, answered here by the mock server's
 * expectations as a real API server would answer them.
 */
class BackendAccessTest {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static final String RUNNER = "system:serviceaccount:default:runner";
  private static final String READER = "system:serviceaccount:default:reader";
  private static final String OTHER = "system:serviceaccount:default:other";
  private static final String ADMIN = "system:serviceaccount:default:admin";

  /** verbs each user is granted on terraformstates/state */
  private static final Map<String, Set<String>> GRANTS =
      Map.of(
          RUNNER, Set.of("get", "update"),
          OTHER, Set.of("get", "update"),
          READER, Set.of("get"),
          ADMIN, Set.of("get", "update", "delete", "force-unlock"));

  private static OperatorHarness harness;
  private static BackendClient backend;

  @BeforeAll
  static void start() {
    harness = OperatorHarness.start();
    KubernetesMockServer server = harness.api().mockServer();
    server
        .expect()
        .post()
        .withPath("/apis/authentication.k8s.io/v1/tokenreviews")
        .andReply(200, request -> tokenReview(request.getBody().readUtf8()))
        .always();
    server
        .expect()
        .post()
        .withPath("/apis/authorization.k8s.io/v1/subjectaccessreviews")
        .andReply(200, request -> accessReview(request.getBody().readUtf8()))
        .always();
    String url =
        harness.startBackend(
            new KubernetesAccess(harness.client()),
            new KubernetesJobPods(harness.client()),
            64L * 1024 * 1024);
    backend = new BackendClient(url);
    TerraformState s = new TerraformState();
    s.getMetadata().setName("secured");
    s.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(s).create();
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  private static Object tokenReview(String body) {
    try {
      ObjectNode review = (ObjectNode) JSON.readTree(body);
      String token = review.path("spec").path("token").asText();
      ObjectNode status = review.putObject("status");
      String user =
          switch (token) {
            case "runner-token" -> RUNNER;
            case "reader-token" -> READER;
            case "other-token" -> OTHER;
            case "admin-token" -> ADMIN;
            default -> null;
          };
      if (user == null) {
        status.put("authenticated", false).put("error", "token has expired");
      } else {
        // Tokens here are issued for leasehold: the API server names the audiences they match.
        status.set("audiences", review.path("spec").path("audiences"));
        ObjectNode u = status.put("authenticated", true).putObject("user");
        u.put("username", user).put("uid", user + "-uid");
        u.putArray("groups").add("system:serviceaccounts");
        if (user.equals(RUNNER)) {
          ObjectNode extra = u.putObject("extra");
          extra.putArray("authentication.kubernetes.io/pod-name").add("runner-pod");
        }
      }
      return review;
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }

  private static Object accessReview(String body) {
    try {
      ObjectNode review = (ObjectNode) JSON.readTree(body);
      JsonNode spec = review.path("spec");
      JsonNode attrs = spec.path("resourceAttributes");
      boolean allowed =
          "leasehold.io".equals(attrs.path("group").asText())
              && "terraformstates".equals(attrs.path("resource").asText())
              && "state".equals(attrs.path("subresource").asText())
              && GRANTS
                  .getOrDefault(spec.path("user").asText(), Set.of())
                  .contains(attrs.path("verb").asText());
      review.putObject("status").put("allowed", allowed);
      return review;
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }

  private static Map<String, String> auth(String token) {
    String basic =
        Base64.getEncoder().encodeToString(("x:" + token).getBytes(StandardCharsets.UTF_8));
    return Map.of("Authorization", "Basic " + basic);
  }

  @Test
  @DisplayName("Without credentials, or with a token the API server rejects, the answer is 401")
  void unauthenticated() throws Exception {
    BackendClient.Response none = backend.send("GET", NAMESPACE + "/secured", null, Map.of());
    assertThat(none.status()).isEqualTo(401);
    assertThat(none.body()).contains("no credentials").contains("ServiceAccount token");
    assertThat(none.header("WWW-Authenticate")).contains("Basic");

    BackendClient.Response expired =
        backend.send("GET", NAMESPACE + "/secured", null, auth("stale-token"));
    assertThat(expired.status()).isEqualTo(401);
    assertThat(expired.body()).contains("did not accept the token: token has expired");
  }

  @Test
  @DisplayName(
      "A reader may read but not write, lock or force-unlock; 403 says which verb is missing")
  void readerMayOnlyRead() throws Exception {
    assertThat(backend.send("GET", NAMESPACE + "/secured", null, auth("reader-token")).status())
        .isIn(200, 404);
    BackendClient.Response write =
        backend.send(
            "POST",
            NAMESPACE + "/secured",
            TerraformStates.stateJson(1, "l", 1),
            auth("reader-token"));
    assertThat(write.status()).isEqualTo(403);
    assertThat(write.body())
        .contains(READER + " may not update terraformstates/state 'secured'")
        .contains("verbs: [update]");
    BackendClient.Response lock =
        backend.send(
            "LOCK",
            NAMESPACE + "/secured/lock",
            lockInfo("r", "r@x").toJson(),
            auth("reader-token"));
    assertThat(lock.status()).isEqualTo(403);
    BackendClient.Response force =
        backend.send("UNLOCK", NAMESPACE + "/secured/lock", null, auth("runner-token"));
    assertThat(force.status()).isEqualTo(403);
    assertThat(force.body()).contains("may not force-unlock");
  }

  @Test
  @DisplayName(
      "The pod of the admitted Job locks at once under the Job's lock and writes with it, while"
          + " any other client gets 423; its unlock leaves the Job's lock in place")
  void admittedJobPodOwnsTheLock() throws Exception {
    TerraformState s = new TerraformState();
    s.getMetadata().setName("jobbed");
    s.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(s).create();
    Job job = RunnerJobFixtures.create(harness.client(), "jobbed-run", "jobbed");
    await()
        .atMost(Duration.ofSeconds(20))
        .until(
            () -> RunnerJobFixtures.running(RunnerJobFixtures.get(harness.client(), "jobbed-run")));
    harness
        .client()
        .resource(
            new PodBuilder()
                .withNewMetadata()
                .withName("runner-pod")
                .withNamespace(NAMESPACE)
                .addNewOwnerReference()
                .withApiVersion("batch/v1")
                .withKind("Job")
                .withName("jobbed-run")
                .withUid(job.getMetadata().getUid())
                .withController(true)
                .endOwnerReference()
                .endMetadata()
                .withNewSpec()
                .addNewContainer()
                .withName("terraform")
                .withImage("hashicorp/terraform:1.11")
                .endContainer()
                .endSpec()
                .build())
        .create();
    String state = NAMESPACE + "/jobbed";

    BackendClient.Response other =
        backend.send(
            "LOCK", state + "/lock", lockInfo("outsider", "o@x").toJson(), auth("other-token"));
    assertThat(other.status()).isEqualTo(423);
    assertThat(other.body()).contains("job/jobbed-run");

    BackendClient.Response mine =
        backend.send(
            "LOCK",
            state + "/lock",
            lockInfo("tf-in-job", "runner@pod").toJson(),
            auth("runner-token"));
    assertThat(mine.status()).isEqualTo(200);
    assertThat(
            backend
                .send(
                    "POST",
                    state + "?ID=tf-in-job",
                    TerraformStates.stateJson(1, "lin-job", 1),
                    auth("runner-token"))
                .status())
        .isEqualTo(200);
    assertThat(
            backend
                .send(
                    "POST",
                    state + "?ID=outsider",
                    TerraformStates.stateJson(2, "lin-job", 1),
                    auth("other-token"))
                .status())
        .isEqualTo(409);
    // The Job's lock ID is published in status.lock.id, but it is no bearer token.
    String jobLock = "job/jobbed-run/" + job.getMetadata().getUid();
    BackendClient.Response borrowed =
        backend.send(
            "POST",
            state + "?ID=" + jobLock,
            TerraformStates.stateJson(2, "lin-job", 1),
            auth("other-token"));
    assertThat(borrowed.status()).isEqualTo(403);
    assertThat(borrowed.body()).contains("runner Job jobbed-run").contains("force-unlock");
    assertThat(
            backend
                .send(
                    "UNLOCK", state + "/lock", lockInfo(jobLock, "x").toJson(), auth("other-token"))
                .status())
        .isEqualTo(403);
    assertThat(
            backend
                .send(
                    "UNLOCK",
                    state + "/lock",
                    lockInfo("tf-in-job", "runner@pod").toJson(),
                    auth("runner-token"))
                .status())
        .isEqualTo(200);
    Lease lease =
        harness
            .client()
            .leases()
            .inNamespace(NAMESPACE)
            .withName("lock-tfstate-default-jobbed")
            .get();
    assertThat(lease.getSpec().getHolderIdentity()).startsWith("job/jobbed-run/");
    assertThat(lease.getMetadata().getAnnotations())
        .containsKey(LeaseLock.HELD_FOR_ANNOTATION)
        .doesNotContainKey(LeaseLock.CLIENT_LOCK_ANNOTATION);
    RunnerJobFixtures.finish(harness.client(), "jobbed-run", true);
  }

  @Test
  @DisplayName(
      "A lock belongs to whoever took it: another identity carrying its ID to write, delete or"
          + " unlock gets 403 naming the holder; with the force-unlock verb it may")
  void lockBelongsToWhoeverTookIt() throws Exception {
    TerraformState s = new TerraformState();
    s.getMetadata().setName("owned");
    s.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(s).create();
    String state = NAMESPACE + "/owned";
    String lease = "lock-tfstate-default-owned";
    assertThat(
            backend
                .send(
                    "LOCK",
                    state + "/lock",
                    lockInfo("owned-1", "runner@ci").toJson(),
                    auth("runner-token"))
                .status())
        .isEqualTo(200);

    BackendClient.Response write =
        backend.send(
            "POST",
            state + "?ID=owned-1",
            TerraformStates.stateJson(1, "lin-owned", 1),
            auth("other-token"));
    assertThat(write.status()).isEqualTo(403);
    assertThat(write.body())
        .contains("lock owned-1")
        .contains("belongs to " + RUNNER)
        .contains("runner@ci")
        .contains("force-unlock");
    BackendClient.Response unlock =
        backend.send(
            "UNLOCK", state + "/lock", lockInfo("owned-1", "x").toJson(), auth("other-token"));
    assertThat(unlock.status()).isEqualTo(403);
    assertThat(
            harness
                .client()
                .leases()
                .inNamespace(NAMESPACE)
                .withName(lease)
                .get()
                .getSpec()
                .getHolderIdentity())
        .isEqualTo("owned-1");
    assertThat(
            backend
                .send(
                    "POST",
                    state + "?ID=owned-1",
                    TerraformStates.stateJson(1, "lin-owned", 1),
                    auth("runner-token"))
                .status())
        .isEqualTo(200);

    // Someone with force-unlock may use the ID, as terraform force-unlock could anyway.
    BackendClient.Response forced =
        backend.send(
            "UNLOCK", state + "/lock", lockInfo("owned-1", "x").toJson(), auth("admin-token"));
    assertThat(forced.status()).isEqualTo(200);
    assertThat(
            harness
                .client()
                .leases()
                .inNamespace(NAMESPACE)
                .withName(lease)
                .get()
                .getSpec()
                .getHolderIdentity())
        .isNull();
    await()
        .atMost(Duration.ofSeconds(10))
        .until(
            () ->
                harness.events("owned").stream()
                    .anyMatch(e -> e.contains("ForceUnlocked") && e.contains(ADMIN)));
  }
}
