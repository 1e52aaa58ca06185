package io.leasehold.cluster;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.api.model.authentication.TokenReview;
import io.fabric8.kubernetes.api.model.authentication.TokenReviewBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.lock.LockInfo;
import io.leasehold.support.BackendHttp;
import io.leasehold.tls.Pem;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.security.Signature;
import java.time.Duration;
import java.time.Instant;
import java.util.Base64;
import java.util.List;
import java.util.UUID;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * Who may use the backend, judged by the real API server: TokenReview with the audience {@code
 * leasehold} and SubjectAccessReview against the chart's runner RBAC.
 */
class TokenAuthClusterIT {

  private static final Duration WAIT = Duration.ofSeconds(60);
  private static final String READER = "state-reader";
  private static final ObjectMapper JSON = new ObjectMapper();

  private static RealCluster cluster;
  private static KubernetesClient admin;
  private static String ns;
  private static ClusterOperator operator;

  /** The chart's defaults: tokens for the audience leasehold only. */
  private static ClusterOperator.Replica strict;

  /** Started as the chart runs it with auth.acceptApiServerTokens: --accept-api-server-tokens. */
  private static ClusterOperator.Replica migrating;

  private static String ca;

  @BeforeAll
  static void start() throws Exception {
    cluster = RealCluster.get();
    admin = cluster.admin();
    ns = cluster.newNamespace("tokens");
    ChartInstall chart =
        ChartInstall.apply(
            cluster,
            List.of(
                new ChartInstall.Runner(ns, ChartInstall.RUNNER, "readWrite"),
                new ChartInstall.Runner(ns, READER, "readOnly")));
    ChartInstall.awaitCrd(admin);
    operator = ClusterOperator.start(cluster, chart, ns, 1);
    strict = operator.replica(0);
    migrating = operator.add(List.of("--accept-api-server-tokens"));
    ca = operator.caPem(WAIT);
  }

  @AfterAll
  static void stop() {
    if (Boolean.getBoolean("leasehold.cluster.keep")) {
      return;
    }
    if (operator != null) {
      operator.close();
    }
    if (admin != null && ns != null) {
      admin.namespaces().withName(ns).delete();
    }
  }

  private static String newState(String name) {
    admin.resource(ClusterFixtures.state(ns, name)).create();
    ClusterFixtures.awaitReady(admin, ns, name);
    return name;
  }

  private static ClusterBackend client(ClusterOperator.Replica replica, String token) {
    return ClusterBackend.of(replica, ns, ca, token);
  }

  private static String leaseholdToken(String serviceAccount) {
    return cluster.token(ns, serviceAccount, "leasehold", Duration.ofMinutes(30));
  }

  @Test
  @DisplayName(
      "A runner's ServiceAccount token issued for the audience leasehold locks, writes, reads and"
          + " unlocks on every replica")
  void aTokenForLeaseholdWorks() {
    String state = newState("welcome");
    String token = leaseholdToken(ChartInstall.RUNNER);
    for (ClusterOperator.Replica replica : List.of(strict, migrating)) {
      ClusterBackend backend = client(replica, token);
      LockInfo info = info();
      assertThat(backend.lock(state, info).status()).isEqualTo(200);
      assertThat(backend.post(state, info.id(), stateJson(replica == strict ? 1 : 2)).status())
          .isEqualTo(200);
      assertThat(backend.get(state).status()).isEqualTo(200);
      assertThat(backend.unlock(state, info).status()).isEqualTo(200);
    }
  }

  @Test
  @DisplayName(
      "A token issued for the API server's own audience (a pod's default token) is refused with 401"
          + " naming the audience leasehold, unless the replica runs with"
          + " --accept-api-server-tokens (chart auth.acceptApiServerTokens)")
  void anApiServerTokenIsRefusedUnlessAccepted() {
    String state = newState("audience");
    String apiServerToken =
        cluster.token(
            ns, ChartInstall.RUNNER, ClusterOperator.API_AUDIENCE, Duration.ofMinutes(30));
    ClusterBackend.Answer refused = client(strict, apiServerToken).lock(state, info());
    assertThat(refused.status()).isEqualTo(401);
    assertThat(refused.body()).contains("audience 'leasehold'");
    assertThat(holder(state)).isEmpty();

    LockInfo info = info();
    ClusterBackend accepted = client(migrating, apiServerToken);
    assertThat(accepted.lock(state, info).status()).isEqualTo(200);
    assertThat(accepted.unlock(state, info).status()).isEqualTo(200);
    assertThat(migrating.tail()).contains("--accept-api-server-tokens");
  }

  @Test
  @DisplayName(
      "An expired token, signed by the cluster's own key and otherwise valid, is refused with 401,"
          + " while the same token re-signed unexpired is accepted")
  void anExpiredTokenIsRefused() throws Exception {
    String state = newState("expired");
    String real = leaseholdToken(ChartInstall.RUNNER);
    Instant now = Instant.now();
    String expired =
        resign(
            real,
            c -> {
              c.put("iat", now.minusSeconds(3600).getEpochSecond());
              c.put("nbf", now.minusSeconds(3600).getEpochSecond());
              c.put("exp", now.minusSeconds(600).getEpochSecond());
            });
    String fresh =
        resign(
            real,
            c -> {
              c.put("iat", now.minusSeconds(5).getEpochSecond());
              c.put("nbf", now.minusSeconds(5).getEpochSecond());
              c.put("exp", now.plusSeconds(1200).getEpochSecond());
            });
    for (ClusterOperator.Replica replica : List.of(strict, migrating)) {
      ClusterBackend.Answer refused = client(replica, expired).get(state);
      assertThat(refused.status()).as(replica + ": " + refused.body()).isEqualTo(401);
    }
    assertThat(client(strict, fresh).get(state).status())
        .as("the re-signed token is good but for its expiry")
        .isEqualTo(404);
  }

  @Test
  @DisplayName(
      "A token bound to a pod is accepted while the pod runs and refused with 401 once the pod is"
          + " deleted and the API server no longer accepts it: at once by a replica that never saw"
          + " it, and within the 10 s a review is kept by one that accepted it moments before")
  void aTokenOfADeletedPodIsRefused() {
    String state = newState("bound");
    Pod pod =
        admin
            .pods()
            .inNamespace(ns)
            .resource(
                new PodBuilder()
                    .withNewMetadata()
                    .withName("runner-pod")
                    .withNamespace(ns)
                    .endMetadata()
                    .withNewSpec()
                    .withServiceAccountName(ChartInstall.RUNNER)
                    .withAutomountServiceAccountToken(false)
                    .withNodeName("kwok-node-0")
                    .addNewContainer()
                    .withName("terraform")
                    .withImage("hashicorp/terraform:1.11")
                    .endContainer()
                    .endSpec()
                    .build())
            .create();
    String orphaned = cluster.podToken(pod, "leasehold");
    assertThat(client(strict, orphaned).get(state).status())
        .as("accepted while its pod runs")
        .isEqualTo(404);
    admin.pods().inNamespace(ns).withName("runner-pod").withGracePeriod(0).delete();
    await()
        .atMost(WAIT)
        .until(() -> admin.pods().inNamespace(ns).withName("runner-pod").get() == null);
    await()
        .atMost(WAIT)
        .alias("the API server itself no longer authenticates the token")
        .until(() -> !reviewed(orphaned));
    ClusterBackend.Answer fresh = client(migrating, orphaned).get(state);
    assertThat(fresh.status()).as("a replica that never saw it: " + fresh.body()).isEqualTo(401);
    await()
        .atMost(Duration.ofSeconds(12))
        .alias("the replica that accepted it refuses it once its 10 s review has run out")
        .until(() -> client(strict, orphaned).get(state).status() == 401);
  }

  @Test
  @DisplayName(
      "A ServiceAccount without the runner Role is authenticated but refused with 403 naming the"
          + " verb and resource it lacks (get for reading, update for locking)")
  void aServiceAccountWithoutTheRoleIsForbidden() {
    String state = newState("forbidden");
    cluster.serviceAccount(ns, "stranger");
    ClusterBackend stranger = client(strict, leaseholdToken("stranger"));
    ClusterBackend.Answer read = stranger.get(state);
    assertThat(read.status()).isEqualTo(403);
    assertThat(read.body())
        .contains("may not get terraformstates/state")
        .contains("system:serviceaccount:" + ns + ":stranger");
    ClusterBackend.Answer lock = stranger.lock(state, info());
    assertThat(lock.status()).isEqualTo(403);
    assertThat(lock.body()).contains("may not update terraformstates/state");
    assertThat(holder(state)).isEmpty();
  }

  @Test
  @DisplayName(
      "A readOnly runner (chart runnerRbac access readOnly) reads the state and its history but is"
          + " refused LOCK, UNLOCK and writes with 403 naming update")
  void aReadOnlyRunnerReadsButCannotLockOrWrite() {
    String state = newState("readonly");
    ClusterBackend writer = client(strict, leaseholdToken(ChartInstall.RUNNER));
    LockInfo held = info();
    assertThat(writer.lock(state, held).status()).isEqualTo(200);
    assertThat(writer.post(state, held.id(), stateJson(1)).status()).isEqualTo(200);
    assertThat(writer.unlock(state, held).status()).isEqualTo(200);

    ClusterBackend reader = client(strict, leaseholdToken(READER));
    assertThat(reader.get(state).status()).isEqualTo(200);
    assertThat(reader.send("GET", "/v1/states/" + ns + "/" + state + "/history", null).status())
        .isEqualTo(200);
    LockInfo mine = info();
    ClusterBackend.Answer lock = reader.lock(state, mine);
    assertThat(lock.status()).isEqualTo(403);
    assertThat(lock.body()).contains("may not update");
    ClusterBackend.Answer write = reader.post(state, null, stateJson(2));
    assertThat(write.status()).isEqualTo(403);
    assertThat(write.body()).contains("may not update");
    assertThat(writer.lock(state, held).status()).isEqualTo(200);
    assertThat(reader.unlock(state, held).status()).isEqualTo(403);
    assertThat(holder(state)).isEqualTo(held.id());
    assertThat(writer.unlock(state, held).status()).isEqualTo(200);
  }

  /** Whether the API server's own TokenReview (for audience leasehold) authenticates it. */
  private static boolean reviewed(String token) {
    TokenReview review =
        admin
            .authentication()
            .v1()
            .tokenReviews()
            .create(
                new TokenReviewBuilder()
                    .withNewSpec()
                    .withToken(token)
                    .withAudiences("leasehold")
                    .endSpec()
                    .build());
    return review.getStatus() != null && Boolean.TRUE.equals(review.getStatus().getAuthenticated());
  }

  /** The token with its claims changed and signed again with the cluster's signing key. */
  private static String resign(String token, java.util.function.Consumer<ObjectNode> change)
      throws Exception {
    String[] parts = token.split("\\.");
    Base64.Decoder dec = Base64.getUrlDecoder();
    Base64.Encoder enc = Base64.getUrlEncoder().withoutPadding();
    ObjectNode claims = (ObjectNode) JSON.readTree(dec.decode(parts[1]));
    change.accept(claims);
    String signed = parts[0] + "." + enc.encodeToString(JSON.writeValueAsBytes(claims));
    Signature rsa = Signature.getInstance("SHA256withRSA");
    rsa.initSign(
        Pem.privateKey(
            Files.readString(cluster.dir().resolve("pki/sa.key"), StandardCharsets.UTF_8),
            "the service-account signing key"));
    rsa.update(signed.getBytes(StandardCharsets.US_ASCII));
    return signed + "." + enc.encodeToString(rsa.sign());
  }

  private static LockInfo info() {
    return BackendHttp.lockInfo(UUID.randomUUID().toString(), "tester");
  }

  private static String stateJson(long serial) {
    return "{\"version\":4,\"terraform_version\":\"1.11.4\",\"serial\":"
        + serial
        + ",\"lineage\":\"4d1f7f0e-tokens\",\"outputs\":{},\"resources\":[]}";
  }

  private static String holder(String state) {
    var lease = admin.leases().inNamespace(ns).withName("lock-tfstate-default-" + state).get();
    return lease == null || lease.getSpec().getHolderIdentity() == null
        ? ""
        : lease.getSpec().getHolderIdentity();
  }
}
