package io.leasehold.state;

import io.fabric8.kubernetes.api.model.Secret;
import io.leasehold.api.StateFacts;
import java.io.ByteArrayInputStream;
import java.io.FilterInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.SequenceInputStream;
import java.security.DigestInputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.Optional;
import java.util.TreeMap;
import java.util.zip.GZIPInputStream;
import java.util.zip.ZipException;

/**
 * Reads a state stored the way Terraform's {@code kubernetes} backend stores it: gzip in the {@code
 * tfstate} key of Secret {@code tfstate-WS-NAME}, continued past 1 MiB in {@code
 * tfstate-WS-NAME-part-1}, {@code -part-2}, ... It streams, so a large state is never held whole:
 * the JSON is parsed as it is decompressed, and a Secret's base64 is decoded only when the stream
 * reaches it.
 */
public final class StoredState {

  public static final String DATA_KEY = "tfstate";
  private static final int BUFFER = 64 * 1024;

  private StoredState() {}

  /**
   * A stored state's gzip data, decoded, in chunk order (main first), with the Secrets it was read
   * from. The Secrets may have been stripped of their data: they are kept for their names and the
   * versions that updates are conditional on.
   */
  public record Compressed(List<Secret> secrets, List<Chunk> parts) {
    public long size() {
      return parts.stream().mapToLong(Chunk::length).sum();
    }

    /** The gzip stream: the parts joined, read without copying them together. */
    public InputStream stream() {
      List<InputStream> streams = new ArrayList<>();
      for (Chunk part : parts) {
        streams.add(part.stream());
      }
      return new SequenceInputStream(Collections.enumeration(streams));
    }
  }

  /** What one pass over a state's JSON found: its facts and the JSON's MD5 (base64). */
  public record Inspection(StateFacts facts, String md5) {}

  /**
   * Facts about the state held in {@code secrets} (any Secrets of the namespace; those that are not
   * this state's are ignored), or empty when there is no state yet. Each Secret's data is decoded
   * only while the stream passes through it, so at most one chunk is held decoded at a time.
   *
   * @throws StateUnreadableException when a chunk is missing or the data is not gzip'd state JSON
   */
  public static Optional<StateFacts> read(StateNames names, Collection<Secret> secrets)
      throws StateUnreadableException {
    Optional<List<Secret>> ordered = ordered(names, secrets);
    if (ordered.isEmpty()) {
      return Optional.empty();
    }
    List<Secret> chunks = ordered.get();
    java.util.Iterator<Secret> next = chunks.iterator();
    Inspection inspection =
        inspect(
            names,
            new ChunkStream(() -> next.hasNext() ? Optional.of(next.next()) : Optional.empty()),
            chunks.size() == 1);
    return Optional.of(inspection.facts());
  }

  /**
   * Facts and MD5 of the state in {@code c}, from one streaming pass over its JSON.
   *
   * @throws StateUnreadableException when the data is not gzip'd state JSON
   */
  public static Inspection inspect(StateNames names, Compressed c) throws StateUnreadableException {
    Inspection inspection = inspect(names, new ChunkStream(c.parts()), c.parts().size() == 1);
    inspection.facts().setChunks(c.parts().size());
    return inspection;
  }

  /**
   * Facts and MD5 of the state whose gzip data {@code compressed} gives, Secret by Secret, from one
   * streaming pass: at most one Secret's data is decoded at a time. Every Secret is read, also past
   * the end of the gzip data, so that each is checked and counted.
   *
   * @param single whether the state is known to be in one Secret (for messages only)
   * @throws StateUnreadableException when the data is not gzip'd state JSON
   */
  public static Inspection inspect(StateNames names, ChunkStream compressed, boolean single)
      throws StateUnreadableException {
    String first = names.secretName();
    String where = single ? where(names, 1) : where(names, 2);
    MessageDigest md5 = md5();
    StateFacts facts;
    try {
      try (CountingInputStream raw =
          new CountingInputStream(new DigestInputStream(gunzip(compressed, where, first), md5))) {
        facts = parse(raw, where, first);
        facts.setRawBytes(raw.count());
        compressed.transferTo(OutputStream.nullOutputStream());
      }
    } catch (ChunkUnreadable e) {
      throw e.unreadable();
    } catch (IOException e) {
      throw new StateUnreadableException(first, where + ": " + describe(e), e);
    }
    facts.setSecretName(first);
    facts.setCompressedBytes(compressed.count());
    facts.setChunks(compressed.chunks());
    return new Inspection(facts, Base64.getEncoder().encodeToString(md5.digest()));
  }

  /** The state JSON, decompressed, checked to be a Terraform state. */
  public static byte[] decompress(StateNames names, Compressed c) throws StateUnreadableException {
    String first = names.secretName();
    String where = where(names, c.parts().size());
    try (InputStream in = gunzip(c.stream(), where, first)) {
      byte[] raw = in.readAllBytes();
      facts(raw, where, first);
      return raw;
    } catch (IOException e) {
      throw new StateUnreadableException(first, where + ": " + describe(e), e);
    }
  }

  /**
   * The state JSON of {@code c} as a stream, decompressed as it is read (its gzip data must have
   * been checked, for example by {@link #inspect}).
   */
  public static InputStream open(Compressed c) throws IOException {
    return new GZIPInputStream(c.stream(), BUFFER);
  }

  /**
   * Whether the gzip data {@code a} and {@code b} hold the same bytes once decompressed, compared
   * as both streams are read.
   */
  public static boolean sameContent(InputStream a, List<Chunk> b) throws IOException {
    try (InputStream x = new GZIPInputStream(a, BUFFER);
        InputStream y = open(new Compressed(List.of(), b))) {
      byte[] bx = new byte[BUFFER];
      byte[] by = new byte[BUFFER];
      while (true) {
        int nx = x.readNBytes(bx, 0, BUFFER);
        int ny = y.readNBytes(by, 0, BUFFER);
        if (nx != ny || !Arrays.equals(bx, 0, nx, by, 0, ny)) {
          return false;
        }
        if (nx < BUFFER) {
          return true;
        }
      }
    }
  }

  /**
   * Facts of a state JSON document (serial, lineage, version, resource instances, size).
   *
   * @throws StateUnreadableException naming {@code where} when it is not a Terraform state
   */
  public static StateFacts facts(byte[] raw, String where, String objectName)
      throws StateUnreadableException {
    try {
      StateFacts facts = parse(new ByteArrayInputStream(raw), where, objectName);
      facts.setRawBytes((long) raw.length);
      return facts;
    } catch (IOException e) {
      throw new StateUnreadableException(objectName, where + ": " + describe(e), e);
    }
  }

  /**
   * Facts of a state JSON document read from {@code raw}, which is read to its end (the caller
   * counts it if it needs the size).
   *
   * @throws StateUnreadableException naming {@code where} when it is not a Terraform state
   * @throws IOException when {@code raw} itself fails (a JSON error is a StateUnreadableException)
   */
  public static StateFacts facts(InputStream raw, String where, String objectName)
      throws IOException, StateUnreadableException {
    return parse(raw, where, objectName);
  }

  static MessageDigest md5() {
    try {
      return MessageDigest.getInstance("MD5");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  private static String where(StateNames names, int chunks) {
    return chunks == 1
        ? "Secret " + names.secretName()
        : "Secret " + names.secretName() + " and its chunks";
  }

  /**
   * The Secrets of the state held in {@code secrets}, in chunk order, or empty when there is no
   * state yet (Terraform reads a state Secret without the key as no state too). Their data is not
   * decoded here.
   *
   * @throws StateUnreadableException when a chunk or the main Secret is missing, or a chunk has no
   *     data
   */
  public static Optional<List<Secret>> ordered(StateNames names, Collection<Secret> secrets)
      throws StateUnreadableException {
    TreeMap<Integer, Secret> chunks = new TreeMap<>();
    for (Secret secret : secrets) {
      int index = names.chunkIndex(secret.getMetadata().getName());
      if (index >= 0) {
        chunks.put(index, secret);
      }
    }
    Secret main = chunks.get(0);
    if (main == null) {
      if (!chunks.isEmpty()) {
        Secret orphan = chunks.firstEntry().getValue();
        throw new StateUnreadableException(
            orphan.getMetadata().getName(),
            "Secret "
                + names.secretName()
                + " is missing but its chunk "
                + orphan.getMetadata().getName()
                + " exists");
      }
      return Optional.empty();
    }
    if (main.getData() == null || !main.getData().containsKey(DATA_KEY)) {
      return Optional.empty();
    }
    List<Secret> ordered = new ArrayList<>();
    int expected = 0;
    for (var entry : chunks.entrySet()) {
      Secret secret = entry.getValue();
      String name = secret.getMetadata().getName();
      if (entry.getKey() != expected) {
        throw missingChunk(names, expected, name);
      }
      expected++;
      if (secret.getData() == null || secret.getData().get(DATA_KEY) == null) {
        throw new StateUnreadableException(
            name, "Secret " + name + " has no '" + DATA_KEY + "' key");
      }
      ordered.add(secret);
    }
    return Optional.of(List.copyOf(ordered));
  }

  /** Chunk {@code expected} is missing, and {@code found} comes after it. */
  static StateUnreadableException missingChunk(StateNames names, int expected, String found) {
    return new StateUnreadableException(
        found,
        "chunk "
            + names.chunkSecretName(expected)
            + " is missing: found "
            + found
            + " after "
            + (expected == 1 ? names.secretName() : names.chunkSecretName(expected - 1)));
  }

  /**
   * The gzip data in Secret {@code secret}'s {@code tfstate} key.
   *
   * @throws StateUnreadableException when the key is missing or not base64
   */
  public static Chunk decode(Secret secret) throws StateUnreadableException {
    String name = secret.getMetadata().getName();
    String encoded = secret.getData() == null ? null : secret.getData().get(DATA_KEY);
    if (encoded == null) {
      throw new StateUnreadableException(name, "Secret " + name + " has no '" + DATA_KEY + "' key");
    }
    try {
      return Chunk.fromBase64(encoded);
    } catch (IllegalArgumentException e) {
      throw new StateUnreadableException(
          name, "Secret " + name + " key '" + DATA_KEY + "' is not base64", e);
    }
  }

  /**
   * The gzip data of the state held in {@code secrets}, decoded, in chunk order, or empty when
   * there is no state yet.
   */
  public static Optional<Compressed> collect(StateNames names, Collection<Secret> secrets)
      throws StateUnreadableException {
    Optional<List<Secret>> ordered = ordered(names, secrets);
    if (ordered.isEmpty()) {
      return Optional.empty();
    }
    List<Chunk> parts = new ArrayList<>();
    for (Secret s : ordered.get()) {
      parts.add(decode(s));
    }
    return Optional.of(new Compressed(ordered.get(), List.copyOf(parts)));
  }

  private static InputStream gunzip(InputStream compressed, String where, String first)
      throws StateUnreadableException, ChunkUnreadable {
    try {
      return new GZIPInputStream(compressed, BUFFER);
    } catch (ChunkUnreadable e) {
      throw e;
    } catch (IOException e) {
      throw new StateUnreadableException(first, where + ": not gzip data (" + describe(e) + ")", e);
    }
  }

  private static StateFacts parse(InputStream in, String where, String first)
      throws IOException, StateUnreadableException {
    return StateJson.parse(in, where, first);
  }

  private static String describe(IOException e) {
    if (e instanceof ZipException || e instanceof java.io.EOFException) {
      return "gzip data is corrupt or truncated: " + e.getMessage();
    }
    // The parser's own messages quote the state's text: only the kind and position are told.
    return "state is " + ParseFault.describe(e);
  }

  private static final class CountingInputStream extends FilterInputStream {
    private long count;

    CountingInputStream(InputStream in) {
      super(in);
    }

    @Override
    public int read() throws IOException {
      int b = super.read();
      if (b >= 0) {
        count++;
      }
      return b;
    }

    @Override
    public int read(byte[] b, int off, int len) throws IOException {
      int n = super.read(b, off, len);
      if (n > 0) {
        count += n;
      }
      return n;
    }

    long count() {
      return count;
    }
  }

  /**
   * A Secret of the state that cannot be read (its data is not base64, or it changed since it was
   * first read), met while streaming: carries the reason as it is to be reported.
   */
  public static final class ChunkUnreadable extends IOException {
    private final transient StateUnreadableException unreadable;

    public ChunkUnreadable(StateUnreadableException unreadable) {
      super(unreadable.getMessage());
      this.unreadable = unreadable;
    }

    public StateUnreadableException unreadable() {
      return unreadable;
    }
  }

  /** Where a {@link ChunkStream} gets the state's Secrets from, in order, one at a time. */
  @FunctionalInterface
  public interface SecretSource {
    /** The next Secret of the state, or empty after the last. */
    Optional<Secret> next() throws IOException;
  }

  /**
   * The gzip data of a state's Secrets in order, each decoded from base64 only when the stream gets
   * to it and dropped when it is past, so that one Secret's data at most is held.
   */
  public static final class ChunkStream extends InputStream {
    private final SecretSource source;
    private final java.util.Iterator<Chunk> held;
    private InputStream current = InputStream.nullInputStream();
    private long count;
    private int chunks;

    /** Over Secrets from {@code source}, decoded as they come. */
    public ChunkStream(SecretSource source) {
      this.source = source;
      this.held = null;
    }

    /** Over chunks already decoded. */
    public ChunkStream(List<Chunk> parts) {
      this.source = null;
      this.held = parts.iterator();
    }

    private boolean advance() throws IOException {
      if (held != null) {
        if (!held.hasNext()) {
          return false;
        }
        current = held.next().stream();
      } else {
        Optional<Secret> next = source.next();
        if (next.isEmpty()) {
          return false;
        }
        try {
          current = decode(next.get()).stream();
        } catch (StateUnreadableException e) {
          throw new ChunkUnreadable(e);
        }
      }
      chunks++;
      return true;
    }

    @Override
    public int read() throws IOException {
      byte[] one = new byte[1];
      return read(one, 0, 1) < 0 ? -1 : one[0] & 0xff;
    }

    @Override
    public int read(byte[] b, int off, int len) throws IOException {
      if (len == 0) {
        return 0;
      }
      while (true) {
        int n = current.read(b, off, len);
        if (n > 0) {
          count += n;
          return n;
        }
        if (!advance()) {
          return -1;
        }
      }
    }

    @Override
    public int available() throws IOException {
      return current.available();
    }

    /** Bytes of gzip data read so far. */
    public long count() {
      return count;
    }

    /** Secrets (or chunks) reached so far. */
    public int chunks() {
      return chunks;
    }
  }
}
