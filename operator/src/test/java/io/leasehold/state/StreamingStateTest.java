package io.leasehold.state;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.fabric8.kubernetes.api.model.Secret;
import io.leasehold.api.StateFacts;
import io.leasehold.support.TerraformStates;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.zip.GZIPInputStream;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The streaming pieces of reading and writing a state: gzip into parts, one-pass bodies. */
class StreamingStateTest {

  private static final StateNames NAMES = new StateNames("ns", "app", "default");

  private static byte[] join(List<Chunk> parts) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    parts.forEach(p -> out.writeBytes(p.toByteArray()));
    return out.toByteArray();
  }

  private static byte[] gunzip(byte[] gz) throws IOException {
    try (InputStream in = new GZIPInputStream(new ByteArrayInputStream(gz))) {
      return in.readAllBytes();
    }
  }

  private static byte[] noise(int n, long seed) {
    byte[] b = new byte[n];
    new Random(seed).nextBytes(b);
    return b;
  }

  private static List<Chunk> gzipInParts(byte[] raw, int partBytes) throws IOException {
    ChunkedGzip gz = new ChunkedGzip(partBytes);
    gz.write(raw);
    return gz.finish();
  }

  @Test
  @DisplayName(
      "Gzip goes straight into parts: all full but the last, none empty, exactly filled at a"
          + " boundary, and joined they are the gzip of the input")
  void gzipPartsAtBoundaries() throws Exception {
    byte[] raw = noise(300_000, 1);
    byte[] whole = join(gzipInParts(raw, Integer.MAX_VALUE));
    assertThat(gunzip(whole)).isEqualTo(raw);
    int length = whole.length;

    // Exactly one part's worth: one part, no empty one after it.
    List<Chunk> one = gzipInParts(raw, length);
    assertThat(one).hasSize(1);
    assertThat(one.get(0).toByteArray()).isEqualTo(whole);

    // One byte over: a full part and a part of one byte.
    List<Chunk> over = gzipInParts(raw, length - 1);
    assertThat(over).hasSize(2);
    assertThat(over.get(0).length()).isEqualTo(length - 1);
    assertThat(over.get(1).length()).isEqualTo(1);
    assertThat(join(over)).isEqualTo(whole);

    // Parts that divide the data exactly: all full.
    int third = length / 3;
    List<Chunk> small = gzipInParts(raw, third);
    assertThat(join(small)).isEqualTo(whole);
    for (int i = 0; i < small.size() - 1; i++) {
      assertThat(small.get(i).length()).isEqualTo(third);
    }
    assertThat(small.get(small.size() - 1).length()).isBetween(1, third);
  }

  @Test
  @DisplayName("Gzip parts of a real size are 1 MiB each and decompress to the input")
  void gzipPartsOfOneMebibyte() throws Exception {
    byte[] raw = noise(2 * StateStore.CHUNK_BYTES + 12_345, 2);
    List<Chunk> parts = ChunkedGzip.of(raw);
    assertThat(parts).hasSize(3);
    assertThat(parts.get(0).length()).isEqualTo(StateStore.CHUNK_BYTES);
    assertThat(parts.get(1).length()).isEqualTo(StateStore.CHUNK_BYTES);
    assertThat(gunzip(join(parts))).isEqualTo(raw);
  }

  @Test
  @DisplayName("An empty input still gzips into one (small) part")
  void gzipOfNothing() throws Exception {
    List<Chunk> parts = ChunkedGzip.of(new byte[0]);
    assertThat(parts).hasSize(1);
    assertThat(gunzip(parts.get(0).toByteArray())).isEmpty();
  }

  @Test
  @DisplayName("A body is read once into its size, MD5, facts and gzip parts that decompress to it")
  void incomingStateInOnePass() throws Exception {
    String json = TerraformStates.randomState(7, "lin-in", 3 * 1024 * 1024, 3);
    byte[] body = json.getBytes(StandardCharsets.UTF_8);

    IncomingState in = IncomingState.read(new ByteArrayInputStream(body), body.length);

    assertThat(in.tooLarge()).isFalse();
    assertThat(in.notAState()).isNull();
    assertThat(in.bytes()).isEqualTo(body.length);
    assertThat(in.md5())
        .isEqualTo(
            Base64.getEncoder().encodeToString(MessageDigest.getInstance("MD5").digest(body)));
    assertThat(in.facts().getSerial()).isEqualTo(7);
    assertThat(in.facts().getLineage()).isEqualTo("lin-in");
    assertThat(in.facts().getRawBytes()).isEqualTo(body.length);
    assertThat(in.parts()).hasSizeGreaterThan(1);
    for (int i = 0; i < in.parts().size() - 1; i++) {
      assertThat(in.parts().get(i).length()).isEqualTo(StateStore.CHUNK_BYTES);
    }
    assertThat(gunzip(join(in.parts()))).isEqualTo(body);
  }

  @Test
  @DisplayName("A body of exactly the limit is read; one byte more is too large, read no further")
  void incomingStateLimit() throws Exception {
    byte[] body = TerraformStates.stateJson(1, "l", 3).getBytes(StandardCharsets.UTF_8);
    assertThat(IncomingState.read(new ByteArrayInputStream(body), body.length).tooLarge())
        .isFalse();
    IncomingState unlimited = IncomingState.read(new ByteArrayInputStream(body), Long.MAX_VALUE);
    assertThat(unlimited.tooLarge()).isFalse();
    assertThat(unlimited.bytes()).isEqualTo(body.length);

    CountingStream counted = new CountingStream(body);
    IncomingState over = IncomingState.read(counted, body.length - 1);
    assertThat(over.tooLarge()).isTrue();
    assertThat(over.parts()).isEmpty();
    assertThat(counted.read).isEqualTo(body.length);
  }

  @Test
  @DisplayName("An empty body is not a state, and its MD5 is still known")
  void incomingEmptyBody() throws Exception {
    IncomingState in = IncomingState.read(InputStream.nullInputStream(), 100);
    assertThat(in.tooLarge()).isFalse();
    assertThat(in.notAState()).isNotNull();
    assertThat(in.bytes()).isZero();
    assertThat(in.md5()).isEqualTo("1B2M2Y8AsgTpgAmY7PhCfg==");
    assertThat(in.parts()).isEmpty();
  }

  @Test
  @DisplayName(
      "A body that stops being JSON half way is read to its end all the same, so its MD5 covers"
          + " all of it")
  void incomingNotJsonIsReadToTheEnd() throws Exception {
    byte[] body =
        ("{\"version\":4,\"serial\":1, oops " + "x".repeat(200_000))
            .getBytes(StandardCharsets.UTF_8);
    IncomingState in = IncomingState.read(new ByteArrayInputStream(body), body.length);
    assertThat(in.notAState())
        .hasMessageContaining("not JSON at character 25")
        .hasMessageNotContaining("oops");
    assertThat(in.bytes()).isEqualTo(body.length);
    assertThat(in.md5())
        .isEqualTo(
            Base64.getEncoder().encodeToString(MessageDigest.getInstance("MD5").digest(body)));
  }

  @ParameterizedTest(name = "stored gzip of {0} bytes")
  @ValueSource(ints = {StateStore.CHUNK_BYTES, 2 * StateStore.CHUNK_BYTES})
  @DisplayName(
      "A stock-written state whose gzip fills its Secrets exactly is read from them, chunk by"
          + " chunk")
  void readsStateFillingChunksExactly(int gzipBytes) throws Exception {
    String json = TerraformStates.stateForStoredGzipOf(gzipBytes, 4, "lin-exact");
    byte[] gz = TerraformStates.storedGzip(json.getBytes(StandardCharsets.UTF_8));
    assertThat(gz).hasSize(gzipBytes);
    List<Secret> secrets = TerraformStates.secretsOfGzip(NAMES, gz);
    assertThat(secrets).hasSize(gzipBytes / StateStore.CHUNK_BYTES);

    StateFacts facts = StoredState.read(NAMES, secrets).orElseThrow();

    assertThat(facts.getChunks()).isEqualTo(secrets.size());
    assertThat(facts.getCompressedBytes()).isEqualTo(gzipBytes);
    assertThat(facts.getRawBytes()).isEqualTo(json.length());
    assertThat(facts.getSerial()).isEqualTo(4);
  }

  @Test
  @DisplayName("A chunk whose data is not base64 is named, even past the first chunk")
  void namesChunkThatIsNotBase64() {
    List<Secret> chunks =
        new ArrayList<>(
            TerraformStates.secrets(
                NAMES, TerraformStates.randomState(1, "l", StateStore.CHUNK_BYTES * 2, 4)));
    assertThat(chunks).hasSize(2);
    chunks.get(1).setData(Map.of(StoredState.DATA_KEY, "not*base64"));
    assertThatThrownBy(() -> StoredState.read(NAMES, chunks))
        .isInstanceOf(StateUnreadableException.class)
        .hasMessageContaining("tfstate-default-app-part-1")
        .hasMessageContaining("not base64");
  }

  @Test
  @DisplayName(
      "Equal content is told from different content by streaming both, across different part"
          + " sizes")
  void sameContentAcrossPartSizes() throws Exception {
    byte[] raw = noise(2_500_000, 5);
    StoredState.Compressed stored =
        new StoredState.Compressed(List.of(), gzipInParts(raw, StateStore.CHUNK_BYTES));
    assertThat(StoredState.sameContent(stored.stream(), gzipInParts(raw, 777_777))).isTrue();
    byte[] changed = raw.clone();
    changed[raw.length - 1] ^= 1;
    assertThat(StoredState.sameContent(stored.stream(), gzipInParts(changed, 777_777))).isFalse();
    byte[] longer = java.util.Arrays.copyOf(raw, raw.length + 1);
    assertThat(StoredState.sameContent(stored.stream(), gzipInParts(longer, 777_777))).isFalse();
    byte[] shorter = java.util.Arrays.copyOf(raw, raw.length - 1);
    assertThat(StoredState.sameContent(stored.stream(), gzipInParts(shorter, 777_777))).isFalse();
  }

  @Test
  @DisplayName("Inspecting stored parts gives the facts and the MD5 of the JSON")
  void inspectGivesFactsAndMd5() throws Exception {
    byte[] body =
        TerraformStates.randomState(9, "lin-md5", 1_500_000, 6).getBytes(StandardCharsets.UTF_8);
    StoredState.Compressed c = new StoredState.Compressed(List.of(), ChunkedGzip.of(body));
    StoredState.Inspection inspection = StoredState.inspect(NAMES, c);
    assertThat(inspection.facts().getSerial()).isEqualTo(9);
    assertThat(inspection.facts().getRawBytes()).isEqualTo(body.length);
    assertThat(inspection.facts().getChunks()).isEqualTo(c.parts().size());
    assertThat(inspection.md5())
        .isEqualTo(
            Base64.getEncoder().encodeToString(MessageDigest.getInstance("MD5").digest(body)));
    try (InputStream in = StoredState.open(c)) {
      assertThat(in.readAllBytes()).isEqualTo(body);
    }
  }

  @Test
  @DisplayName(
      "A chunk's base64 is the base64 of its bytes, and decoding it gives them back, piece by"
          + " piece")
  void chunkBase64RoundTrip() {
    for (int n :
        new int[] {
          0, 1, 2, 3, Chunk.PIECE - 1, Chunk.PIECE, Chunk.PIECE + 1, StateStore.CHUNK_BYTES
        }) {
      byte[] bytes = noise(n, n);
      Chunk chunk = Chunk.of(bytes);
      String text = Base64.getEncoder().encodeToString(bytes);
      assertThat(chunk.base64()).as("%d bytes", n).isEqualTo(text);
      assertThat(Chunk.fromBase64(text).toByteArray()).as("%d bytes", n).isEqualTo(bytes);
      assertThat(Chunk.fromBase64(text).length()).isEqualTo(n);
    }
    assertThatThrownBy(() -> Chunk.fromBase64("not*base64"))
        .isInstanceOf(IllegalArgumentException.class);
  }

  /** A stream that counts how much was taken from it. */
  private static final class CountingStream extends ByteArrayInputStream {
    long read;

    CountingStream(byte[] data) {
      super(data);
    }

    @Override
    public synchronized int read(byte[] b, int off, int len) {
      int n = super.read(b, off, len);
      if (n > 0) {
        read += n;
      }
      return n;
    }
  }
}
