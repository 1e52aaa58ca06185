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
import io.leasehold.support.OpenTofuStates;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.TerraformStates;
import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
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
    // A state that requires encryption, holding an encrypted version.
    TerraformState enc = new TerraformState();
    enc.getMetadata().setName("table-enc");
    enc.getMetadata().setNamespace(NAMESPACE);
    enc.getSpec().getEncryption().setRequired(true);
    harness.client().resource(enc).create();
    assertThat(backend.send("POST", ENC, encrypted(7, "lin-e"), auth("admin")).status())
        .isEqualTo(200);
    encryptedVersion = historyIds(ENC).get(0);
    // A state at the largest serial Terraform knows.
    TerraformState max = new TerraformState();
    max.getMetadata().setName("table-max");
    max.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(max).create();
    assertThat(
            backend
                .send("POST", MAX_STATE, TerraformStates.stateJson(1, "lin-m", 1), auth("admin"))
                .status())
        .isEqualTo(200);
    assertThat(
            backend
                .send(
                    "POST",
                    MAX_STATE,
                    TerraformStates.stateJson(-1L, "lin-m", 1)
                        .replace("-1", "18446744073709551615"),
                    auth("admin"))
                .status())
        .isEqualTo(200);
    maxVersion = historyIds(MAX_STATE).get(1);
    // A state whose write is in progress in another replica: its journal says so until tomorrow.
    TerraformState busy = new TerraformState();
    busy.getMetadata().setName("table-busy");
    busy.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(busy).create();
    assertThat(
            backend
                .send("POST", BUSY, TerraformStates.stateJson(1, "lin-busy", 1), auth("admin"))
                .status())
        .isEqualTo(200);
    busyVersion = historyIds(BUSY).get(0);
    new io.leasehold.state.WriteJournal(
            harness.client(), new io.leasehold.state.StateNames(NAMESPACE, "table-busy", "default"))
        .begin(
            busyVersion,
            busyVersion,
            "2",
            "another replica",
            java.time.Instant.now().plus(Duration.ofDays(1)));
  }

  private static String busyVersion;
  private static final String BUSY = NAMESPACE + "/table-busy";

  private static String encryptedVersion;
  private static String maxVersion;
  private static final String ENC = NAMESPACE + "/table-enc";
  private static final String MAX_STATE = NAMESPACE + "/table-max";

  /** OpenTofu's client-side encrypted state, as it sends it. */
  static String encrypted(long serial, String lineage) {
    return OpenTofuStates.encrypted(serial, lineage);
  }

  private static List<String> historyIds(String state) throws Exception {
    List<String> ids = new ArrayList<>();
    JSON.readTree(backend.send("GET", state + "/history", (String) null, auth("admin")).body())
        .get("versions")
        .forEach(v -> ids.add(v.get("id").asText()));
    return ids;
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

  /** The states' Secrets (data, labels, annotations), history and Leases, as stored now. */
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
    for (String name : List.of("table", "table-enc", "table-max", "table-busy")) {
      Lease lease =
          harness
              .client()
              .leases()
              .inNamespace(NAMESPACE)
              .withName("lock-tfstate-default-" + name)
              .get();
      all.put(
          "lease/" + name,
          lease == null
              ? "none"
              : lease.getMetadata().getResourceVersion()
                  + " "
                  + lease.getSpec()
                  + lease.getMetadata().getAnnotations());
    }
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
        Arguments.of("DELETE while locked", "DELETE", S, null, auth("admin"), 423, "locked by h@x"),
        // Parsing equal to Terraform's.
        post(
            "serial with a fraction",
            "{\"version\":4,\"serial\":200.5,\"lineage\":\"lin-t\"}",
            400,
            "'serial' must be a whole number"),
        post(
            "serial in exponent form",
            "{\"version\":4,\"serial\":1.2e1,\"lineage\":\"lin-t\"}",
            400,
            "'serial' must be a whole number"),
        post(
            "negative serial",
            "{\"version\":4,\"serial\":-1,\"lineage\":\"lin-t\"}",
            400,
            "'serial' must be a whole number"),
        post(
            "serial past 2^64-1",
            "{\"version\":4,\"serial\":18446744073709551616,\"lineage\":\"lin-t\"}",
            400,
            "over 18446744073709551615"),
        post(
            "serial as a string",
            "{\"version\":4,\"serial\":\"3\",\"lineage\":\"lin-t\"}",
            400,
            "found a string"),
        post(
            "serial and Serial",
            "{\"version\":4,\"serial\":3,\"Serial\":9,\"lineage\":\"lin-t\"}",
            400,
            "key 'serial' appears twice, in letters of different case"),
        post(
            "Serial alone",
            "{\"version\":4,\"Serial\":3,\"lineage\":\"lin-t\"}",
            400,
            "is 'serial' in letters of different case"),
        post(
            "serial with a long s",
            "{\"version\":4,\"\u017ferial\":3,\"lineage\":\"lin-t\"}",
            400,
            "is 'serial' in letters of different case"),
        post(
            "serial twice",
            "{\"version\":4,\"serial\":3,\"serial\":1,\"lineage\":\"lin-t\"}",
            400,
            "key 'serial' appears twice"),
        post(
            "another key twice",
            "{\"version\":4,\"serial\":3,\"lineage\":\"lin-t\",\"x\":1,\"X\":2}",
            400,
            "a top-level key appears twice"),
        post(
            "lineage a number",
            "{\"version\":4,\"serial\":3,\"lineage\":7}",
            400,
            "'lineage' must be a string"),
        post(
            "lineage empty",
            "{\"version\":4,\"serial\":3,\"lineage\":\"\"}",
            400,
            "'lineage' must be 1 to 256"),
        post(
            "version 4.0",
            "{\"version\":4.0,\"serial\":3,\"lineage\":\"lin-t\"}",
            400,
            "'version' must be 4"),
        post(
            "version 5",
            "{\"version\":5,\"serial\":3,\"lineage\":\"lin-t\"}",
            400,
            "'version' must be 4"),
        post(
            "terraform_version not a version",
            "{\"version\":4,\"terraform_version\":\"latest\",\"serial\":3,\"lineage\":\"lin-t\"}",
            400,
            "'terraform_version' must be a version"),
        post(
            "resources not an array",
            "{\"version\":4,\"serial\":3,\"lineage\":\"lin-t\",\"resources\":{}}",
            400,
            "'resources' must be an array"),
        post(
            "data after the state",
            "{\"version\":4,\"serial\":3,\"lineage\":\"lin-t\"} {}",
            400,
            "data after the state JSON"),
        Arguments.of(
            "byte-order mark",
            "POST",
            S + "?ID=holder-1",
            concat(
                new byte[] {(byte) 0xef, (byte) 0xbb, (byte) 0xbf},
                good3.getBytes(StandardCharsets.UTF_8)),
            auth("runner"),
            400,
            "not JSON at character 0"),
        Arguments.of(
            "UTF-16 body",
            "POST",
            S + "?ID=holder-1",
            good3.getBytes(StandardCharsets.UTF_16BE),
            auth("runner"),
            400,
            "not a Terraform state"),
        Arguments.of(
            "invalid UTF-8",
            "POST",
            S + "?ID=holder-1",
            good3.replace("lin-t", "lin-\u00ff").getBytes(StandardCharsets.ISO_8859_1),
            auth("runner"),
            400,
            "not valid UTF-8"),
        // OpenTofu's encrypted state.
        post(
            "encrypted state without its serial",
            "{\"lineage\":\"lin-t\",\"meta\":{},\"encrypted_data\":\"QQ==\",\"encryption_version\":\"v0\"}",
            400,
            "needs its 'serial' and 'lineage' in clear"),
        post(
            "unknown encryption_version",
            "{\"serial\":3,\"lineage\":\"lin-t\",\"encrypted_data\":\"QQ==\",\"encryption_version\":\"v9\"}",
            400,
            "'encryption_version' must be \"v0\""),
        post(
            "encrypted_data without encryption_version",
            "{\"serial\":3,\"lineage\":\"lin-t\",\"encrypted_data\":\"QQ==\"}",
            400,
            "without 'encryption_version'"),
        Arguments.of(
            "plaintext where encryption is required",
            "POST",
            ENC,
            TerraformStates.stateJson(8, "lin-e", 1),
            auth("runner"),
            409,
            "requires an encrypted state (spec.encryption.required)"),
        Arguments.of(
            "plaintext with decoy encryption fields where encryption is required",
            "POST",
            ENC,
            OpenTofuStates.decoy(8, "lin-e", "decoy-secret"),
            auth("runner"),
            409,
            "OpenTofu's encryption fields next to plaintext state fields"),
        Arguments.of(
            "an envelope too short to be sealed where encryption is required",
            "POST",
            ENC,
            "{\"serial\":8,\"lineage\":\"lin-e\",\"meta\":{},\"encrypted_data\":\"AAAA\","
                + "\"encryption_version\":\"v0\"}",
            auth("runner"),
            409,
            "fewer than the 28 of AES-GCM's nonce and tag"),
        Arguments.of(
            "encrypted state of lower serial",
            "POST",
            ENC,
            encrypted(6, "lin-e"),
            auth("runner"),
            409,
            "serial 6 is lower than the stored serial 7"),
        Arguments.of(
            "encrypted state of another lineage",
            "POST",
            ENC,
            encrypted(8, "lin-other"),
            auth("runner"),
            409,
            "lineage lin-other differs"),
        Arguments.of(
            "restore of an encrypted version",
            "POST",
            ENC + "/history/" + encryptedVersion + "/restore",
            null,
            auth("runner"),
            409,
            "OpenTofu-encrypted"),
        Arguments.of(
            "restore over the largest serial",
            "POST",
            MAX_STATE + "/history/" + maxVersion + "/restore",
            null,
            auth("runner"),
            409,
            "the largest Terraform knows"),
        // A write in progress elsewhere (its journal is there).
        Arguments.of(
            "restore racing another write",
            "POST",
            BUSY + "/history/" + busyVersion + "/restore",
            null,
            auth("runner"),
            409,
            "another write of this state (serial 2 by another replica"),
        Arguments.of(
            "write racing another write",
            "POST",
            BUSY,
            TerraformStates.stateJson(2, "lin-busy", 2),
            auth("runner"),
            503,
            "is in progress or was interrupted"),
        Arguments.of(
            "delete racing another write",
            "DELETE",
            BUSY,
            null,
            auth("admin"),
            503,
            "is in progress or was interrupted"),
        // Bodies: bounded, read only after authentication, never inflated.
        Arguments.of(
            "gzip-compressed state",
            "POST",
            S + "?ID=holder-1",
            TerraformStates.gzip(good3.getBytes(StandardCharsets.UTF_8)),
            header("Content-Encoding", "gzip"),
            415,
            "Content-Encoding gzip is not accepted"),
        Arguments.of(
            "gzip-compressed LOCK",
            "LOCK",
            S + "/lock",
            TerraformStates.gzip(lockInfo("z-1", "z@x").toJson().getBytes(StandardCharsets.UTF_8)),
            header("Content-Encoding", "gzip"),
            415,
            "Content-Encoding gzip is not accepted"),
        Arguments.of(
            "LOCK body over 64 KiB",
            "LOCK",
            S + "/lock",
            lockInfo("big-1", "x".repeat(70_000)).toJson(),
            auth("runner"),
            413,
            "over the limit of 65536 bytes"),
        Arguments.of(
            "UNLOCK body over 64 KiB",
            "UNLOCK",
            S + "/lock",
            lockInfo("holder-1", "x".repeat(70_000)).toJson(),
            auth("runner"),
            413,
            "over the limit of 65536 bytes"),
        Arguments.of(
            "lock ID over 256 characters",
            "LOCK",
            S + "/lock",
            lockInfo("i".repeat(300), "i@x").toJson(),
            auth("runner"),
            400,
            "at most 256 are taken"),
        Arguments.of(
            "lock ID with control characters",
            "LOCK",
            S + "/lock",
            lockInfo("id\u0000\u202e", "i@x").toJson(),
            auth("runner"),
            400,
            "control or invisible"),
        Arguments.of(
            "LockInfo Who over 1024 characters",
            "LOCK",
            S + "/lock",
            lockInfo("who-1", "w".repeat(2000)).toJson(),
            auth("runner"),
            400,
            "Who is 2000 characters long"),
        Arguments.of(
            "LOCK in form encoding that is not JSON",
            "LOCK",
            S + "/lock",
            "ID=x&Who=y",
            header("Content-Type", "application/x-www-form-urlencoded"),
            400,
            "not a Terraform LockInfo"),
        Arguments.of(
            "?ID= over 256 characters",
            "POST",
            S + "?ID=" + "i".repeat(300),
            good3,
            auth("runner"),
            400,
            "?ID=: the lock ID is 300 characters long"),
        Arguments.of("GET with a body", "GET", S, "{}", auth("runner"), 413, "over the limit of 0"),
        Arguments.of(
            "DELETE with a body", "DELETE", S, "{}", auth("admin"), 413, "over the limit of 0"),
        Arguments.of(
            "a body sent before authentication",
            "POST",
            S + "?ID=holder-1",
            good3,
            Map.of("Authorization", "Bearer abc"),
            401,
            "not HTTP Basic"),
        Arguments.of(
            "Content-Length with Transfer-Encoding",
            "RAW",
            null,
            ("POST /v1/states/"
                    + S
                    + "?ID=holder-1 HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n"
                    + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                    + "DELETE /v1/states/"
                    + S
                    + " HTTP/1.1\r\nHost: x\r\n\r\n")
                .getBytes(StandardCharsets.ISO_8859_1),
            Map.of(),
            400,
            "both Content-Length and Transfer-Encoding"));
  }

  private static Arguments post(String what, String body, int status, String message) {
    return Arguments.of(what, "POST", S + "?ID=holder-1", body, auth("runner"), status, message);
  }

  private static byte[] concat(byte[] a, byte[] b) {
    byte[] out = java.util.Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, out, a.length, b.length);
    return out;
  }

  @ParameterizedTest(name = "{0}: {5}")
  @MethodSource("cases")
  void refusedAndNothingChanged(
      String what,
      String method,
      String path,
      Object body,
      Map<String, String> headers,
      int status,
      String message)
      throws Exception {
    Map<String, String> before = stored();
    if (method.equals("RAW")) {
      BackendClient.Raw r = backend.raw((byte[]) body, Duration.ofSeconds(10));
      assertThat(r.status()).as("%s: %s", what, r.text()).isEqualTo(status);
      assertThat(r.text()).as(what).contains(message);
      assertThat(r.responses()).as("%s: one answer, nothing smuggled", what).isEqualTo(1);
      assertThat(r.closed()).as("%s: the connection is closed", what).isTrue();
    } else {
      BackendClient.Response r =
          body instanceof byte[] bytes
              ? backend.sendBytes(method, path, bytes, headers)
              : backend.send(method, path, (String) body, headers);
      assertThat(r.status()).as("%s: %s", what, r.body()).isEqualTo(status);
      assertThat(r.body()).as(what).contains(message);
    }
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
