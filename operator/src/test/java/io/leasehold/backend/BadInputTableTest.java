package io.leasehold.backend;

import static io.leasehold.backend.BackendClient.lockInfo;
import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.server.mock.KubernetesMockServer;
import io.leasehold.api.TerraformState;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.TerraformStates;
import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Bad input, refused clearly, nothing changed: each case asserts the status, a message naming the
 * problem, and that the stored state, its history and the lock are byte-for-byte as they were.
 */
class BadInputTableTest {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static final long MAX = 1024 * 1024;
  private static final String S = NAMESPACE + "/table";
  private static OperatorHarness harness;
  private static BackendClient backend;

  @BeforeAll
  static void start() throws Exception {
    harness = OperatorHarness.start();
    KubernetesMockServer server = harness.api().mockServer();
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
        .andReply(200, r -> access(r.getBody().readUtf8()))
        .always();
    backend =
        new BackendClient(
            harness.startBackend(new KubernetesAccess(harness.client()), JobPods.NONE, MAX));
    TerraformState s = new TerraformState();
    s.getMetadata().setName("table");
    s.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(s).create();
    // A stored state with history, locked by "holder-1".
    assertThat(
            backend
                .send("POST", S, TerraformStates.stateJson(1, "lin-t", 1), auth("admin"))
                .status())
        .isEqualTo(200);
    assertThat(
            backend
                .send("POST", S, TerraformStates.stateJson(2, "lin-t", 2), auth("admin"))
                .status())
        .isEqualTo(200);
    assertThat(
            backend
                .send("LOCK", S + "/lock", lockInfo("holder-1", "h@x").toJson(), auth("runner"))
                .status())
        .isEqualTo(200);
    assertThat(
            backend
                .send("LOCK", S + "/lock", lockInfo("gone-1", "g@x").toJson(), auth("admin"))
                .status())
        .isEqualTo(423);
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
      if (token.endsWith("-token")) {
        status.set("audiences", review.path("spec").path("audiences"));
        status
            .put("authenticated", true)
            .putObject("user")
            .put("username", token.replace("-token", ""));
      } else {
        status.put("authenticated", false).put("error", "token has expired");
      }
      return review;
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }

  private static Object access(String body) {
    try {
      ObjectNode review = (ObjectNode) JSON.readTree(body);
      String user = review.path("spec").path("user").asText();
      String verb = review.path("spec").path("resourceAttributes").path("verb").asText();
      boolean allowed =
          user.equals("admin")
              || (user.equals("runner") && !verb.equals("force-unlock") && !verb.equals("delete"))
              || (user.equals("reader") && verb.equals("get"));
      review.putObject("status").put("allowed", allowed);
      return review;
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }

  private static Map<String, String> auth(String user) {
    return Map.of(
        "Authorization",
        "Basic "
            + Base64.getEncoder()
                .encodeToString(("x:" + user + "-token").getBytes(StandardCharsets.UTF_8)));
  }

  private static Map<String, String> header(String name, String value) {
    Map<String, String> h = new java.util.HashMap<>(auth("runner"));
    h.put(name, value);
    return h;
  }

  /** The state's Secrets (data, labels, annotations), history and Lease, as stored now. */
  private static Map<String, String> stored() {
    Map<String, String> all = new TreeMap<>();
    for (Secret s : harness.client().secrets().inNamespace(NAMESPACE).list().getItems()) {
      if (s.getMetadata().getName().contains("table")) {
        all.put(
            "secret/" + s.getMetadata().getName(),
            s.getMetadata().getResourceVersion()
                + " "
                + s.getData()
                + s.getMetadata().getLabels()
                + s.getMetadata().getAnnotations());
      }
    }
    Lease lease =
        harness
            .client()
            .leases()
            .inNamespace(NAMESPACE)
            .withName("lock-tfstate-default-table")
            .get();
    all.put(
        "lease",
        lease.getMetadata().getResourceVersion()
            + " "
            + lease.getSpec()
            + lease.getMetadata().getAnnotations());
    return all;
  }

  static Stream<Arguments> cases() {
    String good3 = TerraformStates.stateJson(3, "lin-t", 3);
    String big = TerraformStates.stateJson(3, "lin-t", 1, "x".repeat((int) MAX));
    return Stream.of(
        Arguments.of(
            "malformed JSON",
            "POST",
            S + "?ID=holder-1",
            "{not json",
            auth("runner"),
            400,
            "not a Terraform state"),
        Arguments.of(
            "JSON that is not a state",
            "POST",
            S + "?ID=holder-1",
            "{\"a\":1}",
            auth("runner"),
            400,
            "not a Terraform state"),
        Arguments.of(
            "a JSON array",
            "POST",
            S + "?ID=holder-1",
            "[1,2]",
            auth("runner"),
            400,
            "not a Terraform state"),
        Arguments.of(
            "state without lineage",
            "POST",
            S + "?ID=holder-1",
            "{\"version\":4,\"serial\":3}",
            auth("runner"),
            400,
            "lineage"),
        Arguments.of(
            "Content-MD5 mismatch",
            "POST",
            S + "?ID=holder-1",
            good3,
            header("Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
            400,
            "Content-MD5"),
        Arguments.of(
            "Content-MD5 not base64",
            "POST",
            S + "?ID=holder-1",
            good3,
            header("Content-MD5", "%%%"),
            400,
            "Content-MD5"),
        Arguments.of(
            "oversized body",
            "POST",
            S + "?ID=holder-1",
            big,
            auth("runner"),
            413,
            "over the limit"),
        Arguments.of(
            "no lock ID while locked", "POST", S, good3, auth("runner"), 423, "locked by h@x"),
        Arguments.of(
            "wrong lock ID",
            "POST",
            S + "?ID=someone-else",
            good3,
            auth("runner"),
            409,
            "does not hold the state"),
        Arguments.of(
            "lineage change",
            "POST",
            S + "?ID=holder-1",
            TerraformStates.stateJson(3, "lin-new", 1),
            auth("runner"),
            409,
            "lineage lin-new differs"),
        Arguments.of(
            "serial regression",
            "POST",
            S + "?ID=holder-1",
            TerraformStates.stateJson(1, "lin-t", 9),
            auth("runner"),
            409,
            "lower than the stored serial 2"),
        Arguments.of(
            "same serial, other content",
            "POST",
            S + "?ID=holder-1",
            TerraformStates.stateJson(2, "lin-t", 9),
            auth("runner"),
            409,
            "already stored with other content"),
        Arguments.of(
            "unknown namespace",
            "GET",
            "elsewhere/table",
            null,
            auth("runner"),
            404,
            "no TerraformState elsewhere/table"),
        Arguments.of(
            "unknown name",
            "GET",
            NAMESPACE + "/nothing",
            null,
            auth("runner"),
            404,
            "no TerraformState default/nothing"),
        Arguments.of(
            "dot-dot path",
            "GET",
            NAMESPACE + "/../../secrets",
            null,
            auth("runner"),
            404,
            "not a backend address"),
        Arguments.of(
            "encoded slash",
            "GET",
            NAMESPACE + "%2Ftable/x",
            null,
            auth("runner"),
            400,
            "not a namespace name"),
        Arguments.of(
            "name not a DNS label",
            "GET",
            NAMESPACE + "/Table_1",
            null,
            auth("runner"),
            400,
            "not a TerraformState name"),
        Arguments.of(
            "namespace not a DNS label",
            "GET",
            "Def_ault/table",
            null,
            auth("runner"),
            400,
            "not a namespace name"),
        Arguments.of(
            "PUT on a state", "PUT", S, good3, auth("runner"), 405, "use GET, POST, DELETE"),
        Arguments.of(
            "PATCH on a state", "PATCH", S, good3, auth("runner"), 405, "use GET, POST, DELETE"),
        Arguments.of(
            "GET on the lock", "GET", S + "/lock", null, auth("runner"), 405, "use LOCK, UNLOCK"),
        Arguments.of("missing credentials", "GET", S, null, Map.of(), 401, "no credentials"),
        Arguments.of(
            "Bearer instead of Basic",
            "GET",
            S,
            null,
            Map.of("Authorization", "Bearer abc"),
            401,
            "not HTTP Basic"),
        Arguments.of(
            "Basic that is not base64",
            "GET",
            S,
            null,
            Map.of("Authorization", "Basic ***"),
            401,
            "not base64"),
        Arguments.of(
            "expired token",
            "GET",
            S,
            null,
            Map.of(
                "Authorization",
                "Basic "
                    + Base64.getEncoder()
                        .encodeToString("x:stale".getBytes(StandardCharsets.UTF_8))),
            401,
            "token has expired"),
        Arguments.of(
            "reader writing",
            "POST",
            S + "?ID=holder-1",
            good3,
            auth("reader"),
            403,
            "may not update"),
        Arguments.of(
            "reader locking",
            "LOCK",
            S + "/lock",
            lockInfo("r-1", "r@x").toJson(),
            auth("reader"),
            403,
            "may not update"),
        Arguments.of(
            "runner force-unlocking",
            "UNLOCK",
            S + "/lock",
            null,
            auth("runner"),
            403,
            "may not force-unlock"),
        Arguments.of("runner deleting", "DELETE", S, null, auth("runner"), 403, "may not delete"),
        Arguments.of(
            "UNLOCK by a non-holder",
            "UNLOCK",
            S + "/lock",
            lockInfo("intruder", "i@x").toJson(),
            auth("runner"),
            423,
            "holder-1"),
        Arguments.of(
            "LOCK body that is not JSON",
            "LOCK",
            S + "/lock",
            "lock please",
            auth("runner"),
            400,
            "not a Terraform LockInfo"),
        Arguments.of(
            "LOCK body without ID",
            "LOCK",
            S + "/lock",
            "{\"Who\":\"x\"}",
            auth("runner"),
            400,
            "not a Terraform LockInfo"),
        Arguments.of(
            "UNLOCK body that is not LockInfo",
            "UNLOCK",
            S + "/lock",
            "[]",
            auth("runner"),
            400,
            "not a Terraform LockInfo"),
        Arguments.of(
            "LOCK of a held lock",
            "LOCK",
            S + "/lock",
            lockInfo("second", "s@x").toJson(),
            auth("runner"),
            423,
            "holder-1"),
        Arguments.of(
            "?wait that is not a duration",
            "LOCK",
            S + "/lock?wait=forever",
            lockInfo("w", "w@x").toJson(),
            auth("runner"),
            400,
            "not a duration"),
        Arguments.of(
            "DELETE while locked", "DELETE", S, null, auth("admin"), 423, "locked by h@x"));
  }

  @ParameterizedTest(name = "{0}: {5}")
  @MethodSource("cases")
  void refusedAndNothingChanged(
      String what,
      String method,
      String path,
      String body,
      Map<String, String> headers,
      int status,
      String message)
      throws Exception {
    Map<String, String> before = stored();
    BackendClient.Response r = backend.send(method, path, body, headers);
    assertThat(r.status()).as("%s: %s", what, r.body()).isEqualTo(status);
    assertThat(r.body()).as(what).contains(message);
    assertThat(stored()).as("%s changed nothing", what).isEqualTo(before);
  }

  static Stream<Arguments> invalidSpecs() {
    return Stream.of(
        Arguments.of("name ending in digits", "name: table-2", "", "must not end in '-<digits>'"),
        Arguments.of(
            "lease too short",
            "name: t-short",
            "lock: {leaseDurationSeconds: 1}",
            "spec.lock.leaseDurationSeconds"),
        Arguments.of(
            "history too long", "name: t-hist", "history: {keep: 500}", "spec.history.keep"),
        Arguments.of(
            "unknown deletion policy",
            "name: t-del",
            "deletionPolicy: Purge",
            "spec.deletionPolicy"),
        Arguments.of(
            "workspace with capitals",
            "name: t-ws",
            "workspace: Prod",
            "workspace must be a DNS label"));
  }

  @ParameterizedTest(name = "admission refuses {0}")
  @MethodSource("invalidSpecs")
  void invalidSpecsAreRefusedAtAdmission(String what, String name, String spec, String message) {
    Map<String, String> before = stored();
    String yaml =
        "apiVersion: leasehold.io/v1alpha1\nkind: TerraformState\nmetadata:\n  "
            + name
            + "\nspec:\n  "
            + (spec.isEmpty() ? "{}" : spec)
            + "\n";
    Throwable thrown =
        org.assertj.core.api.Assertions.catchThrowable(
            () ->
                harness
                    .api()
                    .apply(new ByteArrayInputStream(yaml.getBytes(StandardCharsets.UTF_8)), what));
    assertThat(thrown).as(what).isNotNull().hasMessageContaining(message);
    assertThat(stored()).isEqualTo(before);
  }
}
