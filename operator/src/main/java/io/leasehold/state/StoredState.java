package io.leasehold.state;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import io.fabric8.kubernetes.api.model.Secret;
import io.leasehold.api.StateFacts;
import java.io.ByteArrayInputStream;
import java.io.FilterInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.SequenceInputStream;
import java.util.ArrayList;
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
 * tfstate-WS-NAME-part-1}, {@code -part-2}, ... It streams, so a large state is never held whole.
 */
public final class StoredState {

  public static final String DATA_KEY = "tfstate";
  private static final JsonFactory JSON = new JsonFactory();

  private StoredState() {}

  /** A stored state's gzip data, split over its Secrets in order (main first). */
  public record Compressed(List<Secret> secrets, List<byte[]> parts) {
    public long size() {
      return parts.stream().mapToLong(p -> p.length).sum();
    }

    /** The gzip stream: the parts joined, read without copying them together. */
    public InputStream stream() {
      List<InputStream> streams = new ArrayList<>();
      for (byte[] part : parts) {
        streams.add(new ByteArrayInputStream(part));
      }
      return new SequenceInputStream(Collections.enumeration(streams));
    }
  }

  /**
   * Facts about the state held in {@code secrets} (any Secrets of the namespace; those that are not
   * this state's are ignored), or empty when there is no state yet.
   *
   * @throws StateUnreadableException when a chunk is missing or the data is not gzip'd state JSON
   */
  public static Optional<StateFacts> read(StateNames names, Collection<Secret> secrets)
      throws StateUnreadableException {
    Optional<Compressed> compressed = collect(names, secrets);
    if (compressed.isEmpty()) {
      return Optional.empty();
    }
    Compressed c = compressed.get();
    String first = names.secretName();
    String where = where(names, c);
    StateFacts facts;
    try (CountingInputStream raw = new CountingInputStream(gunzip(c, where, first))) {
      facts = parse(raw, where, first);
      facts.setRawBytes(raw.count());
    } catch (IOException e) {
      throw new StateUnreadableException(first, where + ": " + describe(e), e);
    }
    facts.setSecretName(first);
    facts.setCompressedBytes(c.size());
    facts.setChunks(c.parts().size());
    return Optional.of(facts);
  }

  /** The state JSON, decompressed, checked to be a Terraform state. */
  public static byte[] decompress(StateNames names, Compressed c) throws StateUnreadableException {
    String first = names.secretName();
    String where = where(names, c);
    try (InputStream in = gunzip(c, where, first)) {
      byte[] raw = in.readAllBytes();
      facts(raw, where, first);
      return raw;
    } catch (IOException e) {
      throw new StateUnreadableException(first, where + ": " + describe(e), e);
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

  private static String where(StateNames names, Compressed c) {
    return c.parts().size() == 1
        ? "Secret " + names.secretName()
        : "Secret " + names.secretName() + " and its chunks";
  }

  /**
   * The gzip data of the state held in {@code secrets}, in chunk order, or empty when there is no
   * state yet (Terraform reads a state Secret without the key as no state too).
   */
  public static Optional<Compressed> collect(StateNames names, Collection<Secret> secrets)
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
    List<byte[]> parts = new ArrayList<>();
    List<Secret> ordered = new ArrayList<>();
    int expected = 0;
    for (var entry : chunks.entrySet()) {
      Secret secret = entry.getValue();
      String name = secret.getMetadata().getName();
      if (entry.getKey() != expected) {
        throw new StateUnreadableException(
            name,
            "chunk "
                + names.chunkSecretName(expected)
                + " is missing: found "
                + name
                + " after "
                + (expected == 1 ? names.secretName() : names.chunkSecretName(expected - 1)));
      }
      expected++;
      String encoded = secret.getData() == null ? null : secret.getData().get(DATA_KEY);
      if (encoded == null) {
        throw new StateUnreadableException(
            name, "Secret " + name + " has no '" + DATA_KEY + "' key");
      }
      try {
        parts.add(Base64.getDecoder().decode(encoded));
      } catch (IllegalArgumentException e) {
        throw new StateUnreadableException(
            name, "Secret " + name + " key '" + DATA_KEY + "' is not base64: " + e.getMessage(), e);
      }
      ordered.add(secret);
    }
    return Optional.of(new Compressed(List.copyOf(ordered), List.copyOf(parts)));
  }

  private static InputStream gunzip(Compressed c, String where, String first)
      throws StateUnreadableException {
    try {
      return new GZIPInputStream(c.stream(), 64 * 1024);
    } catch (IOException e) {
      throw new StateUnreadableException(first, where + ": not gzip data (" + describe(e) + ")", e);
    }
  }

  private static StateFacts parse(InputStream in, String where, String first)
      throws IOException, StateUnreadableException {
    StateFacts facts = new StateFacts();
    long instances = 0;
    boolean sawVersion = false;
    try (JsonParser parser = JSON.createParser(in)) {
      if (parser.nextToken() != JsonToken.START_OBJECT) {
        throw new StateUnreadableException(first, where + ": state is not a JSON object");
      }
      while (parser.nextToken() == JsonToken.FIELD_NAME) {
        String field = parser.currentName();
        JsonToken value = parser.nextToken();
        switch (field) {
          case "version" -> sawVersion = value.isNumeric();
          case "serial" -> facts.setSerial(value.isNumeric() ? parser.getLongValue() : null);
          case "lineage" -> facts.setLineage(value.isScalarValue() ? parser.getText() : null);
          case "terraform_version" ->
              facts.setTerraformVersion(value.isScalarValue() ? parser.getText() : null);
          case "resources" -> instances = countInstances(parser, value);
          default -> parser.skipChildren();
        }
      }
      if (parser.currentToken() != JsonToken.END_OBJECT) {
        throw new StateUnreadableException(first, where + ": state JSON is malformed");
      }
      // Reads to the end so that truncated or trailing data is noticed.
      if (parser.nextToken() != null) {
        throw new StateUnreadableException(first, where + ": data after the state JSON object");
      }
    }
    if (!sawVersion || facts.getSerial() == null || facts.getLineage() == null) {
      throw new StateUnreadableException(
          first,
          where
              + ": JSON is not a Terraform state (needs numeric 'version' and 'serial' and a"
              + " 'lineage')");
    }
    facts.setResources(instances);
    return facts;
  }

  private static long countInstances(JsonParser parser, JsonToken value) throws IOException {
    if (value != JsonToken.START_ARRAY) {
      parser.skipChildren();
      return 0;
    }
    long count = 0;
    while (parser.nextToken() == JsonToken.START_OBJECT) {
      while (parser.nextToken() == JsonToken.FIELD_NAME) {
        String field = parser.currentName();
        JsonToken token = parser.nextToken();
        if ("instances".equals(field) && token == JsonToken.START_ARRAY) {
          while (parser.nextToken() != JsonToken.END_ARRAY) {
            parser.skipChildren();
            count++;
          }
        } else {
          parser.skipChildren();
        }
      }
    }
    return count;
  }

  private static String describe(IOException e) {
    if (e instanceof ZipException || e instanceof java.io.EOFException) {
      return "gzip data is corrupt or truncated: " + e.getMessage();
    }
    if (e instanceof com.fasterxml.jackson.core.JsonProcessingException json) {
      return "state is not valid JSON: " + json.getOriginalMessage();
    }
    return e.getMessage();
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
}
