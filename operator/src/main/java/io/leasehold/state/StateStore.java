package io.leasehold.state;

import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.SecretBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.StateFacts;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.zip.GZIPOutputStream;

/**
 * Reads and writes a state exactly where and how Terraform's {@code kubernetes} backend keeps it
 * (gzip in Secret {@code tfstate-WS-NAME}, chunked past {@value #CHUNK_BYTES} bytes into {@code
 * -part-N} Secrets), so stock Terraform and leasehold read each other's writes. Every update
 * carries the {@code resourceVersion} it read: a concurrent change makes it fail, never lost.
 */
public final class StateStore {

  /** Terraform (1.10 and later) splits the gzip'd state into Secrets of at most this size. */
  public static final int CHUNK_BYTES = 1_048_576;

  private final KubernetesClient client;
  private final StateNames names;

  public StateStore(KubernetesClient client, StateNames names) {
    this.client = client;
    this.names = names;
  }

  /** The stored state as read from the API server. */
  public record Current(StoredState.Compressed compressed, byte[] raw, StateFacts facts) {}

  /** The Secrets of this state as the API server has them now (main and chunks). */
  public List<Secret> secrets() {
    List<Secret> found = new ArrayList<>();
    Secret main =
        client.secrets().inNamespace(names.namespace()).withName(names.secretName()).get();
    if (main != null) {
      found.add(main);
    }
    for (Secret s :
        client
            .secrets()
            .inNamespace(names.namespace())
            .withLabel(StateNames.LABEL_SUFFIX, names.name())
            .withLabel(StateNames.LABEL_WORKSPACE, names.workspace())
            .list()
            .getItems()) {
      if (names.chunkIndex(s.getMetadata().getName()) > 0) {
        found.add(s);
      }
    }
    return found;
  }

  /**
   * The state now stored, or empty when there is none.
   *
   * @throws StateUnreadableException when what is stored cannot be read (it is left as it is)
   */
  public Optional<Current> read() throws StateUnreadableException {
    Optional<StoredState.Compressed> compressed = StoredState.collect(names, secrets());
    if (compressed.isEmpty()) {
      return Optional.empty();
    }
    byte[] raw = StoredState.decompress(names, compressed.get());
    StateFacts facts = StoredState.facts(raw, "Secret " + names.secretName(), names.secretName());
    facts.setSecretName(names.secretName());
    facts.setCompressedBytes(compressed.get().size());
    facts.setChunks(compressed.get().parts().size());
    return Optional.of(new Current(compressed.get(), raw, facts));
  }

  public static byte[] gzip(byte[] raw) {
    ByteArrayOutputStream out = new ByteArrayOutputStream(Math.max(64, raw.length / 4));
    try (GZIPOutputStream gz = new GZIPOutputStream(out)) {
      gz.write(raw);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return out.toByteArray();
  }

  /** Splits gzip data the way Terraform does: 1 MiB per Secret. */
  public static List<byte[]> split(byte[] gz) {
    List<byte[]> parts = new ArrayList<>();
    for (int offset = 0; offset < gz.length || parts.isEmpty(); offset += CHUNK_BYTES) {
      parts.add(Arrays.copyOfRange(gz, offset, Math.min(gz.length, offset + CHUNK_BYTES)));
    }
    return parts;
  }

  /**
   * Replaces the stored state with {@code raw}. {@code previous} is what the caller read (and
   * checked its write against); each of its Secrets is updated only at the version read, chunks no
   * longer needed are deleted, and missing ones are created.
   *
   * @throws io.fabric8.kubernetes.client.KubernetesClientException with code 409 when any Secret
   *     changed since it was read
   */
  public void write(byte[] raw, Optional<Current> previous) {
    writeOver(raw, previous.map(p -> p.compressed().secrets()).orElse(List.of()));
  }

  /**
   * Replaces whatever state Secrets are in {@code read} (as read, at their versions) with {@code
   * raw}: how a restore replaces a state that cannot be read.
   */
  public void writeOver(byte[] raw, List<Secret> read) {
    List<byte[]> parts = split(gzip(raw));
    Map<Integer, Secret> existing = new HashMap<>();
    read.forEach(s -> existing.put(names.chunkIndex(s.getMetadata().getName()), s));
    if (read.isEmpty()) {
      // A Secret without the tfstate key (Terraform's "no state yet") is updated in place.
      Secret main =
          client.secrets().inNamespace(names.namespace()).withName(names.secretName()).get();
      if (main != null) {
        existing.put(0, main);
      }
    }
    for (int i = 0; i < parts.size(); i++) {
      String name = i == 0 ? names.secretName() : names.chunkSecretName(i);
      Secret old = existing.get(i);
      Secret desired = secret(name, parts.get(i), old);
      if (old == null) {
        client.secrets().inNamespace(names.namespace()).resource(desired).create();
      } else {
        client.secrets().inNamespace(names.namespace()).resource(desired).update();
      }
    }
    for (var entry : existing.entrySet()) {
      if (entry.getKey() >= parts.size()) {
        client
            .secrets()
            .inNamespace(names.namespace())
            .resource(entry.getValue())
            .lockResourceVersion(entry.getValue().getMetadata().getResourceVersion())
            .delete();
      }
    }
  }

  /** Deletes the state Secrets (main and chunks), each at the version read. */
  public void delete(Current previous) {
    for (Secret s : previous.compressed().secrets()) {
      client
          .secrets()
          .inNamespace(names.namespace())
          .resource(s)
          .lockResourceVersion(s.getMetadata().getResourceVersion())
          .delete();
    }
  }

  private Secret secret(String name, byte[] data, Secret old) {
    Map<String, String> labels = new HashMap<>(names.terraformLabels());
    Map<String, String> annotations = new HashMap<>();
    annotations.put("encoding", "gzip");
    SecretBuilder b = old == null ? new SecretBuilder() : new SecretBuilder(old);
    if (old != null && old.getMetadata().getLabels() != null) {
      labels.putAll(old.getMetadata().getLabels());
      labels.putAll(names.terraformLabels());
    }
    if (old != null && old.getMetadata().getAnnotations() != null) {
      annotations.putAll(old.getMetadata().getAnnotations());
      annotations.put("encoding", "gzip");
    }
    return b.editOrNewMetadata()
        .withName(name)
        .withNamespace(names.namespace())
        .withLabels(labels)
        .withAnnotations(annotations)
        .endMetadata()
        .withData(Map.of(StoredState.DATA_KEY, Base64.getEncoder().encodeToString(data)))
        .build();
  }
}
