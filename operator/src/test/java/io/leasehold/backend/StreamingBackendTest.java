package io.leasehold.backend;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.Secret;
import io.leasehold.api.TerraformState;
import io.leasehold.state.StateNames;
import io.leasehold.state.StateStore;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.TerraformStates;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * States larger than one Secret through the HTTP backend: bodies are streamed in and out, and every
 * guard still holds for them.
 */
class StreamingBackendTest {

  private static final long MAX_BYTES = 8L * 1024 * 1024;
  private static final HttpClient HTTP =
      HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
  private static OperatorHarness harness;
  private static String base;

  @BeforeAll
  static void start() {
    harness = OperatorHarness.start();
    base = harness.startBackend(MAX_BYTES);
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  private static String create(String name) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    s.getSpec().getHistory().setKeep(2);
    harness.client().resource(s).create();
    return base + NAMESPACE + "/" + name;
  }

  private static StateNames names(String name) {
    return new StateNames(NAMESPACE, name, "default");
  }

  private static byte[] state(long serial, String lineage, int bytes, long seed) {
    return TerraformStates.randomState(serial, lineage, bytes, seed)
        .getBytes(StandardCharsets.UTF_8);
  }

  private static String md5(byte[] body) throws Exception {
    return Base64.getEncoder().encodeToString(MessageDigest.getInstance("MD5").digest(body));
  }

  private static HttpResponse<String> post(String url, byte[] body, Map<String, String> headers)
      throws IOException, InterruptedException {
    HttpRequest.Builder b =
        HttpRequest.newBuilder(URI.create(url))
            .timeout(Duration.ofMinutes(1))
            .POST(HttpRequest.BodyPublishers.ofByteArray(body));
    headers.forEach(b::header);
    return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
  }

  /** A POST sent with chunked transfer encoding: no Content-Length for the server to check. */
  private static HttpResponse<String> postChunked(String url, byte[] body)
      throws IOException, InterruptedException {
    return HTTP.send(
        HttpRequest.newBuilder(URI.create(url))
            .timeout(Duration.ofMinutes(1))
            .POST(HttpRequest.BodyPublishers.ofInputStream(() -> new ByteArrayInputStream(body)))
            .build(),
        HttpResponse.BodyHandlers.ofString());
  }

  private static HttpResponse<byte[]> get(String url) throws IOException, InterruptedException {
    return HTTP.send(
        HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofMinutes(1)).build(),
        HttpResponse.BodyHandlers.ofByteArray());
  }

  /** The state's Secrets (state and history) and their versions, to see that nothing changed. */
  private static Map<String, String> stored(String name) {
    return harness.client().secrets().inNamespace(NAMESPACE).list().getItems().stream()
        .filter(s -> s.getMetadata().getName().contains("-" + name))
        .collect(
            Collectors.toMap(
                s -> s.getMetadata().getName(),
                s -> s.getMetadata().getResourceVersion(),
                (a, b) -> a,
                TreeMap::new));
  }

  private static List<String> chunkNames(String name) {
    return harness
        .client()
        .secrets()
        .inNamespace(NAMESPACE)
        .withLabel(StateNames.LABEL_SUFFIX, name)
        .list()
        .getItems()
        .stream()
        .map(s -> s.getMetadata().getName())
        .sorted()
        .toList();
  }

  @Test
  @DisplayName(
      "A state of several Secrets is written from a streamed body and read back byte for byte,"
          + " with its Content-MD5 and Content-Length")
  void multiChunkRoundTrip() throws Exception {
    String url = create("big-rt");
    byte[] body = state(1, "lin-rt", 3 * StateStore.CHUNK_BYTES, 1);

    HttpResponse<String> written = post(url, body, Map.of("Content-MD5", md5(body)));
    assertThat(written.statusCode()).as(written.body()).isEqualTo(200);
    assertThat(chunkNames("big-rt"))
        .containsExactly(
            "tfstate-default-big-rt",
            "tfstate-default-big-rt-part-1",
            "tfstate-default-big-rt-part-2");

    HttpResponse<byte[]> read = get(url);
    assertThat(read.statusCode()).isEqualTo(200);
    assertThat(read.body()).isEqualTo(body);
    assertThat(read.headers().firstValue("Content-MD5")).contains(md5(body));
    assertThat(read.headers().firstValue("Content-Length")).contains(Long.toString(body.length));

    // A chunked upload is the same to the backend.
    byte[] next = state(2, "lin-rt", 3 * StateStore.CHUNK_BYTES, 2);
    assertThat(postChunked(url, next).statusCode()).isEqualTo(200);
    assertThat(get(url).body()).isEqualTo(next);

    // The version replaced is kept in history, whole (after the current one).
    HttpResponse<byte[]> history = get(url + "/history");
    String id =
        new com.fasterxml.jackson.databind.ObjectMapper()
            .readTree(history.body())
            .get("versions")
            .get(1)
            .get("id")
            .asText();
    HttpResponse<byte[]> kept = get(url + "/history/" + id);
    assertThat(kept.statusCode()).isEqualTo(200);
    assertThat(kept.body()).isEqualTo(body);
    assertThat(kept.headers().firstValue("Content-MD5")).contains(md5(body));
  }

  @Test
  @DisplayName(
      "Writing a smaller state over a chunked one removes the chunks it no longer needs; a larger"
          + " one adds them")
  void chunksFollowTheSize() throws Exception {
    String url = create("shrink");
    assertThat(post(url, state(1, "lin-s", 3 * StateStore.CHUNK_BYTES, 3), Map.of()).statusCode())
        .isEqualTo(200);
    assertThat(chunkNames("shrink")).hasSize(3);

    byte[] small = state(2, "lin-s", 10_000, 4);
    assertThat(post(url, small, Map.of()).statusCode()).isEqualTo(200);
    assertThat(chunkNames("shrink")).containsExactly("tfstate-default-shrink");
    assertThat(get(url).body()).isEqualTo(small);

    byte[] large = state(3, "lin-s", 2 * StateStore.CHUNK_BYTES, 5);
    assertThat(post(url, large, Map.of()).statusCode()).isEqualTo(200);
    assertThat(chunkNames("shrink")).hasSize(2);
    assertThat(get(url).body()).isEqualTo(large);
  }

  @Test
  @DisplayName(
      "The same serial again is accepted only with the same content, for states of several"
          + " Secrets too; a different content of the same size is refused and changes nothing")
  void equalSerialAcrossChunks() throws Exception {
    String url = create("same-serial");
    byte[] body = state(5, "lin-e", 2 * StateStore.CHUNK_BYTES + 1000, 6);
    assertThat(post(url, body, Map.of()).statusCode()).isEqualTo(200);
    Map<String, String> before = stored("same-serial");

    HttpResponse<String> again = post(url, body, Map.of());
    assertThat(again.statusCode()).isEqualTo(200);
    assertThat(again.body()).contains("already stored");
    assertThat(stored("same-serial")).isEqualTo(before);

    // Same size, same serial, one byte different near the end (in the last chunk).
    byte[] other = body.clone();
    int at = new String(body, StandardCharsets.US_ASCII).lastIndexOf("\",\"type\"") - 1;
    other[at] = (byte) (other[at] == 'A' ? 'B' : 'A');
    HttpResponse<String> refused = post(url, other, Map.of());
    assertThat(refused.statusCode()).isEqualTo(409);
    assertThat(refused.body()).contains("already stored with other content");

    // A different size with the same serial too.
    HttpResponse<String> shorter = post(url, state(5, "lin-e", 1_500_000, 7), Map.of());
    assertThat(shorter.statusCode()).isEqualTo(409);
    assertThat(stored("same-serial")).isEqualTo(before);
    assertThat(get(url).body()).isEqualTo(body);
  }

  @Test
  @DisplayName(
      "A Content-MD5 that does not match a body of several Secrets' worth is refused, whether the"
          + " change is at its start or its end, and nothing changes")
  void md5MismatchOnLargeBody() throws Exception {
    String url = create("md5-big");
    assertThat(post(url, state(1, "lin-m", 10_000, 8), Map.of()).statusCode()).isEqualTo(200);
    Map<String, String> before = stored("md5-big");

    byte[] body = state(2, "lin-m", 3 * StateStore.CHUNK_BYTES, 9);
    String md5 = md5(body);
    byte[] cutShort = java.util.Arrays.copyOf(body, body.length - 1);
    byte[] changedAtEnd = body.clone();
    changedAtEnd[body.length - 30] ^= 1;
    for (byte[] sent : List.of(cutShort, changedAtEnd)) {
      HttpResponse<String> r = post(url, sent, Map.of("Content-MD5", md5));
      assertThat(r.statusCode()).isEqualTo(400);
      assertThat(r.body()).contains("Content-MD5").contains("Nothing was written");
    }
    assertThat(stored("md5-big")).isEqualTo(before);
    assertThat(post(url, body, Map.of("Content-MD5", md5)).statusCode()).isEqualTo(200);
  }

  @Test
  @DisplayName(
      "Bodies over the limit are refused with 413, by Content-Length before they are read, and"
          + " without one once the limit is passed; an empty body is not a state")
  void limitsAndEmptyBodies() throws Exception {
    String url = create("limits");
    assertThat(post(url, state(1, "lin-l", 10_000, 10), Map.of()).statusCode()).isEqualTo(200);
    Map<String, String> before = stored("limits");

    byte[] huge = state(2, "lin-l", (int) MAX_BYTES + 100, 11);
    HttpResponse<String> declared = post(url, huge, Map.of());
    assertThat(declared.statusCode()).isEqualTo(413);
    assertThat(declared.body()).contains("over the limit");
    HttpResponse<String> streamed = postChunked(url, huge);
    assertThat(streamed.statusCode()).isEqualTo(413);
    assertThat(streamed.body()).contains("over the limit");

    HttpResponse<String> empty = post(url, new byte[0], Map.of());
    assertThat(empty.statusCode()).isEqualTo(400);
    assertThat(empty.body()).contains("not a Terraform state");
    assertThat(stored("limits")).isEqualTo(before);

    // The connection is still good for the next request.
    assertThat(get(url).statusCode()).isEqualTo(200);
  }

  @Test
  @DisplayName(
      "A state stock Terraform chunked, with gzip filling its Secrets to the byte, is read back"
          + " byte for byte and written over")
  void readsStockChunkedState() throws Exception {
    String url = create("stock-exact");
    String json = TerraformStates.stateForStoredGzipOf(2L * StateStore.CHUNK_BYTES, 7, "lin-stock");
    byte[] raw = json.getBytes(StandardCharsets.UTF_8);
    List<Secret> secrets =
        TerraformStates.secretsOfGzip(names("stock-exact"), TerraformStates.storedGzip(raw));
    assertThat(secrets).hasSize(2);
    secrets.forEach(s -> harness.client().resource(s).create());

    HttpResponse<byte[]> read = get(url);
    assertThat(read.statusCode()).isEqualTo(200);
    assertThat(read.body()).isEqualTo(raw);
    assertThat(read.headers().firstValue("Content-MD5")).contains(md5(raw));

    byte[] next = state(8, "lin-stock", 20_000, 12);
    assertThat(post(url, next, Map.of()).statusCode()).isEqualTo(200);
    assertThat(chunkNames("stock-exact")).containsExactly("tfstate-default-stock-exact");
    assertThat(get(url).body()).isEqualTo(next);
  }

  @Test
  @DisplayName(
      "A chunk stranded past a missing one makes the state unreadable, naming the gap, and a"
          + " write over it is refused")
  void strandedChunkIsNoticed() throws Exception {
    String url = create("stranded");
    byte[] gz =
        TerraformStates.storedGzip(
            TerraformStates.stateForStoredGzipOf(StateStore.CHUNK_BYTES, 1, "lin-x")
                .getBytes(StandardCharsets.UTF_8));
    StateNames names = names("stranded");
    harness.client().resource(TerraformStates.secretsOfGzip(names, gz).get(0)).create();
    harness
        .client()
        .resource(TerraformStates.secret(names, names.chunkSecretName(2), new byte[] {1, 2, 3}))
        .create();
    Map<String, String> before = stored("stranded");

    HttpResponse<byte[]> read = get(url);
    assertThat(read.statusCode()).isEqualTo(500);
    assertThat(new String(read.body(), StandardCharsets.UTF_8))
        .contains("chunk tfstate-default-stranded-part-1 is missing");
    HttpResponse<String> write = post(url, state(2, "lin-x", 10_000, 13), Map.of());
    assertThat(write.statusCode()).isEqualTo(500);
    assertThat(stored("stranded")).isEqualTo(before);
  }
}
