package io.leasehold.state;

import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.SecretBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.kube.SecretMetadata;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Collectors;

/**
 * Earlier versions of a state, one per accepted write, in Secrets that stock Terraform does not
 * see: they carry no {@code tfstate*} labels, only {@code leasehold.io/state=NAME} and {@code
 * leasehold.io/history=true}. A version is stored gzip'd like the state, chunked the same way when
 * large.
 */
public final class StateHistory {

  public static final String HISTORY_LABEL = "leasehold.io/history";
  public static final String WORKSPACE_LABEL = "leasehold.io/workspace";
  public static final String VERSION_ANNOTATION = "leasehold.io/version";
  public static final String SERIAL_ANNOTATION = "leasehold.io/serial";
  public static final String LINEAGE_ANNOTATION = "leasehold.io/lineage";
  public static final String CHUNK_ANNOTATION = "leasehold.io/chunk";
  public static final String SAVED_AT_ANNOTATION = "leasehold.io/saved-at";
  public static final String REASON_ANNOTATION = "leasehold.io/reason";

  private final KubernetesClient client;
  private final StateNames names;

  public StateHistory(KubernetesClient client, StateNames names) {
    this.client = client;
    this.names = names;
  }

  /** One kept version. */
  public record Version(
      String id, long serial, String lineage, String savedAt, String reason, List<Secret> chunks) {}

  /** Keeps {@code current} as a version, then drops the oldest beyond {@code keep}. */
  public Optional<String> save(StateStore.Current current, String reason, int keep) {
    if (keep <= 0) {
      return Optional.empty();
    }
    String id =
        String.format("%013x", System.currentTimeMillis()) + "-" + current.facts().getSerial();
    List<Secret> read = current.compressed().secrets();
    StateStore store = new StateStore(client, names);
    List<Secret> created = new ArrayList<>();
    try {
      for (int i = 0; i < read.size(); i++) {
        // The gzip data is copied as it is: held, or fetched again at the version read.
        String data =
            current.held()
                ? current.compressed().parts().get(i).base64()
                : store.refetch(read.get(i)).getData().get(StoredState.DATA_KEY);
        created.add(
            client
                .secrets()
                .inNamespace(names.namespace())
                .resource(secret(id, i, read.size(), data, current, reason))
                .create());
      }
    } catch (RuntimeException e) {
      // An incomplete version is no version: take back what was made of it.
      for (Secret s : created) {
        try {
          client.secrets().inNamespace(names.namespace()).resource(s).delete();
        } catch (RuntimeException ignored) {
          // Left behind, it is an incomplete version that load() refuses.
        }
      }
      throw e;
    }
    prune(keep);
    return Optional.of(id);
  }

  /**
   * Keeps the Secrets of a state that cannot be read, exactly as they are, before a restore
   * replaces them: nothing is thrown away, not even a corrupt state.
   */
  public String saveUnreadable(List<Secret> secrets, String reason) {
    String id = String.format("%013x", System.currentTimeMillis()) + "-unreadable";
    List<Secret> ordered = new ArrayList<>(secrets);
    ordered.sort(Comparator.comparingInt(x -> names.chunkIndex(x.getMetadata().getName())));
    for (int i = 0; i < ordered.size(); i++) {
      Map<String, String> data = ordered.get(i).getData();
      String encoded = data == null ? null : data.get(StoredState.DATA_KEY);
      byte[] bytes = encoded == null ? new byte[0] : decodeLeniently(encoded);
      Secret copy =
          new SecretBuilder(
                  secret(
                      id,
                      i,
                      ordered.size(),
                      Base64.getEncoder().encodeToString(bytes),
                      -1,
                      "unreadable",
                      reason))
              .build();
      client.secrets().inNamespace(names.namespace()).resource(copy).create();
    }
    return id;
  }

  private static byte[] decodeLeniently(String encoded) {
    try {
      return Base64.getDecoder().decode(encoded);
    } catch (IllegalArgumentException e) {
      return encoded.getBytes(java.nio.charset.StandardCharsets.UTF_8);
    }
  }

  /** Kept versions, newest first; their Secrets without data (see {@link #compressed}). */
  public List<Version> list() {
    // Metadata only: a version's data is fetched when it is read.
    List<Secret> secrets =
        SecretMetadata.list(
            client,
            names.namespace(),
            Map.of(
                StateNames.LABEL_STATE,
                names.name(),
                WORKSPACE_LABEL,
                names.workspace(),
                HISTORY_LABEL,
                "true"));
    Map<String, List<Secret>> byVersion =
        secrets.stream()
            .filter(s -> annotation(s, VERSION_ANNOTATION) != null)
            .collect(
                Collectors.groupingBy(
                    s -> annotation(s, VERSION_ANNOTATION),
                    LinkedHashMap::new,
                    Collectors.toList()));
    List<Version> versions = new ArrayList<>();
    byVersion.forEach(
        (id, chunks) -> {
          chunks.sort(Comparator.comparingInt(s -> chunkIndex(s)));
          Secret first = chunks.get(0);
          versions.add(
              new Version(
                  id,
                  Long.parseLong(annotation(first, SERIAL_ANNOTATION)),
                  annotation(first, LINEAGE_ANNOTATION),
                  annotation(first, SAVED_AT_ANNOTATION),
                  annotation(first, REASON_ANNOTATION),
                  List.copyOf(chunks)));
        });
    versions.sort(Comparator.comparing(Version::id).reversed());
    return versions;
  }

  /** The state JSON of a kept version. */
  public byte[] load(Version version) throws StateUnreadableException {
    return StoredState.decompress(names, compressed(version));
  }

  /** The gzip data of a kept version, fetched and decoded Secret by Secret. */
  public StoredState.Compressed compressed(Version version) throws StateUnreadableException {
    List<Chunk> parts = new ArrayList<>();
    int expected = chunkCount(version.chunks().get(0));
    if (version.chunks().size() != expected) {
      throw new StateUnreadableException(
          version.chunks().get(0).getMetadata().getName(),
          "history version "
              + version.id()
              + " has "
              + version.chunks().size()
              + " of "
              + expected
              + " chunks");
    }
    for (Secret listed : version.chunks()) {
      Secret s =
          client
              .secrets()
              .inNamespace(names.namespace())
              .withName(listed.getMetadata().getName())
              .get();
      if (s == null) {
        throw new StateUnreadableException(
            listed.getMetadata().getName(),
            "history version "
                + version.id()
                + " lost its Secret "
                + listed.getMetadata().getName());
      }
      parts.add(StoredState.decode(s));
    }
    return new StoredState.Compressed(version.chunks(), List.copyOf(parts));
  }

  /**
   * Drops the oldest versions beyond the newest {@code keep}, each Secret at the version listed (a
   * Secret already gone, or changed meanwhile, is left to whoever changed it). Returns how many
   * versions were dropped.
   */
  public int prune(int keep) {
    List<Version> versions = list();
    int dropped = 0;
    for (int i = Math.max(0, keep); i < versions.size(); i++) {
      delete(versions.get(i));
      dropped++;
    }
    return dropped;
  }

  /**
   * Deletes every Secret of the state's history, complete versions or not (the state is deleted
   * with deletionPolicy Delete), each at the version listed. Returns how many were deleted.
   */
  public int deleteAll() {
    List<Secret> secrets =
        SecretMetadata.list(
            client,
            names.namespace(),
            Map.of(
                StateNames.LABEL_STATE,
                names.name(),
                WORKSPACE_LABEL,
                names.workspace(),
                HISTORY_LABEL,
                "true"));
    int deleted = 0;
    for (Secret s : secrets) {
      try {
        client
            .secrets()
            .inNamespace(names.namespace())
            .resource(s)
            .lockResourceVersion(s.getMetadata().getResourceVersion())
            .delete();
        deleted++;
      } catch (io.fabric8.kubernetes.client.KubernetesClientException e) {
        if (e.getCode() != 404) {
          throw e;
        }
      }
    }
    return deleted;
  }

  private void delete(Version version) {
    for (Secret s : version.chunks()) {
      try {
        client
            .secrets()
            .inNamespace(names.namespace())
            .resource(s)
            .lockResourceVersion(s.getMetadata().getResourceVersion())
            .delete();
      } catch (io.fabric8.kubernetes.client.KubernetesClientException e) {
        if (e.getCode() != 404 && e.getCode() != 409) {
          throw e;
        }
      }
    }
  }

  private Secret secret(
      String id, int index, int count, String data, StateStore.Current current, String reason) {
    return secret(
        id, index, count, data, current.facts().getSerial(), current.facts().getLineage(), reason);
  }

  private Secret secret(
      String id, int index, int count, String data, long serial, String lineage, String reason) {
    String name = ("lh-history-" + names.workspace() + "-" + names.name() + "-" + id + "-" + index);
    return new SecretBuilder()
        .withNewMetadata()
        .withName(name)
        .withNamespace(names.namespace())
        .addToLabels(StateNames.LABEL_STATE, names.name())
        .addToLabels(WORKSPACE_LABEL, names.workspace())
        .addToLabels(HISTORY_LABEL, "true")
        .addToAnnotations(VERSION_ANNOTATION, id)
        .addToAnnotations(SERIAL_ANNOTATION, String.valueOf(serial))
        .addToAnnotations(LINEAGE_ANNOTATION, lineage)
        .addToAnnotations(CHUNK_ANNOTATION, index + "/" + count)
        .addToAnnotations(SAVED_AT_ANNOTATION, Instant.now().toString())
        .addToAnnotations(REASON_ANNOTATION, reason)
        .addToAnnotations("encoding", "gzip")
        .endMetadata()
        .withType("Opaque")
        .withData(Map.of(StoredState.DATA_KEY, data))
        .build();
  }

  private static String annotation(Secret s, String key) {
    Map<String, String> a = s.getMetadata().getAnnotations();
    return a == null ? null : a.get(key);
  }

  private static int chunkIndex(Secret s) {
    String v = annotation(s, CHUNK_ANNOTATION);
    return v == null ? 0 : Integer.parseInt(v.substring(0, v.indexOf('/')));
  }

  private static int chunkCount(Secret s) {
    String v = annotation(s, CHUNK_ANNOTATION);
    return v == null ? 1 : Integer.parseInt(v.substring(v.indexOf('/') + 1));
  }
}
