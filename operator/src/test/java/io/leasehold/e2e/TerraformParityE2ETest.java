package io.leasehold.e2e;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.leasehold.api.StateFacts;
import io.leasehold.api.TerraformState;
import io.leasehold.support.Binaries;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.Terraform;
import java.math.BigInteger;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Whatever leasehold accepts, the real terraform reads back the same: each edge case of the state
 * format that leasehold stores is pulled by {@code terraform state pull}, and its serial and
 * lineage are the ones leasehold reports.
 */
class TerraformParityE2ETest {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static final HttpClient HTTP =
      HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
  private static OperatorHarness harness;
  private static String backendUrl;
  private static int states;

  @BeforeAll
  static void start() {
    Binaries.terraform();
    harness = OperatorHarness.start();
    backendUrl = harness.startBackend(64L * 1024 * 1024);
  }

  @AfterAll
  static void stop() {
    if (harness != null) {
      harness.close();
    }
  }

  private static final String LONG_LINEAGE = "l".repeat(250) + "-\u00e9\u2713";

  static Stream<Arguments> accepted() {
    return Stream.of(
        Arguments.of("serial 0", state("0", "\"lin-zero\"", "")),
        Arguments.of("serial 2^63-1", state("9223372036854775807", "\"lin-max63\"", "")),
        Arguments.of("serial 2^63", state("9223372036854775808", "\"lin-63\"", "")),
        Arguments.of("serial 2^64-2", state("18446744073709551614", "\"lin-64\"", "")),
        Arguments.of(
            "a long lineage, escaped and not ASCII",
            state("3", JSON.valueToTree(LONG_LINEAGE).toString().replace("\u00e9", "\\u00e9"), "")),
        Arguments.of(
            "outputs, resources and check_results null",
            "{\"version\":4,\"terraform_version\":\"1.11.4\",\"serial\":4,\"lineage\":\"lin-null\","
                + "\"outputs\":null,\"resources\":null,\"check_results\":null}"),
        Arguments.of(
            "no terraform_version, an unknown key, keys in another order, spaces",
            "{\n  \"x-extra\": {\"a\": [1, 2]},\n  \"lineage\" : \"lin-odd\",\n  \"serial\" : 5 ,\n"
                + "  \"version\" : 4\n}\n"),
        Arguments.of(
            "a prerelease terraform_version",
            "{\"version\":4,\"terraform_version\":\"1.12.0-beta1+meta\",\"serial\":6,"
                + "\"lineage\":\"lin-pre\",\"outputs\":{},\"resources\":[]}"));
  }

  private static String state(String serial, String lineageJson, String extra) {
    return "{\"version\":4,\"terraform_version\":\"1.11.4\",\"serial\":"
        + serial
        + ",\"lineage\":"
        + lineageJson
        + ",\"outputs\":{},\"resources\":[],\"check_results\":null"
        + extra
        + "}";
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("accepted")
  @DisplayName("An accepted edge case is read back by terraform as leasehold reads it")
  void terraformReadsWhatLeaseholdAccepts(String what, String body, @TempDir Path dir)
      throws Exception {
    String name = "parity-s" + (++states);
    String url = createState(name);
    HttpResponse<String> stored = post(url, body);
    assertThat(stored.statusCode()).as("%s: %s", what, stored.body()).isEqualTo(200);

    Terraform tf = new Terraform(dir);
    tf.writeConfig(Terraform.httpBackend(url, null));
    tf.run("init", "-input=false").assertOk();
    Terraform.Result pulled = tf.run("state", "pull").assertOk();
    JsonNode read = JSON.readTree(pulled.output());
    JsonNode sent = JSON.readTree(body);
    assertThat(read.get("serial").bigIntegerValue())
        .as(what)
        .isEqualTo(sent.get("serial").bigIntegerValue());
    assertThat(read.get("lineage").asText()).as(what).isEqualTo(sent.get("lineage").asText());

    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () -> {
              StateFacts facts = harness.status(name).getState();
              assertThat(facts).isNotNull();
              assertThat(new BigInteger(facts.serialText()))
                  .isEqualTo(sent.get("serial").bigIntegerValue());
              assertThat(facts.getLineage()).isEqualTo(sent.get("lineage").asText());
            });
  }

  @Test
  @DisplayName(
      "terraform writes serial 2^63 over 2^63-1 and leasehold stores it (serials compare"
          + " unsigned), then both read it back")
  void serialsPastSignedRange(@TempDir Path dir) throws Exception {
    String url = createState("parity-wide");
    assertThat(post(url, state("9223372036854775807", "\"lin-wide\"", "")).statusCode())
        .isEqualTo(200);
    Terraform tf = new Terraform(dir);
    tf.writeConfig(
        Terraform.httpBackend(url, null) + "resource \"terraform_data\" \"x\" {\n  input = 1\n}\n");
    tf.run("init", "-input=false").assertOk();
    tf.run("apply", "-auto-approve", "-input=false").assertOk();
    JsonNode read = JSON.readTree(tf.run("state", "pull").assertOk().output());
    assertThat(read.get("serial").bigIntegerValue())
        .isEqualTo(new BigInteger("9223372036854775808"));
    assertThat(Files.exists(dir.resolve("errored.tfstate"))).isFalse();
    JsonNode served = JSON.readTree(get(url));
    assertThat(served.get("serial").asText()).isEqualTo("9223372036854775808");
  }

  private static String createState(String name) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(s).create();
    return backendUrl + NAMESPACE + "/" + name;
  }

  private static HttpResponse<String> post(String url, String body) throws Exception {
    return HTTP.send(
        HttpRequest.newBuilder(URI.create(url))
            .POST(HttpRequest.BodyPublishers.ofString(body))
            .build(),
        HttpResponse.BodyHandlers.ofString());
  }

  private static String get(String url) throws Exception {
    return HTTP.send(
            HttpRequest.newBuilder(URI.create(url)).build(), HttpResponse.BodyHandlers.ofString())
        .body();
  }
}
