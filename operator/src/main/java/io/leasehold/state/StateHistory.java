package io.leasehold.state;

import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.SecretBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.leasehold.api.StateFacts;
import io.leasehold.kube.SecretMetadata;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;
import java.util.stream.Collectors;

/**
 * Versions of a state, in Secrets that stock Terraform does not see: they carry no {@code tfstate*}
 * labels, only {@code leasehold.io/state=NAME} and {@code leasehold.io/history=true}. Every version
 * is kept, whoever wrote it: a write through the backend stores its new version here before the
 * state Secrets change (the journal rolls forward from it), and the operator copies a version
 * written by anyone else when it first sees it. So history holds the current version too, and
 * {@code spec.history.keep} counts it. A version is stored gzip'd like the state, chunked the same
 * way when large.
 */
public final class StateHistory {

  public static final String HISTORY_LABEL = "leasehold.io/history";
  public static final String WORKSPACE_LABEL = "leasehold.io/workspace";
  public static final String VERSION_ANNOTATION = "leasehold.io/version";
  public static final String SERIAL_ANNOTATION = "leasehold.io/serial";
  public static final String LINEAGE_ANNOTATION = "leasehold.io/lineage";
  public static final String MD5_ANNOTATION = "leasehold.io/md5";
  public static final String CHUNK_ANNOTATION = "leasehold.io/chunk";
  public static final String SAVED_AT_ANNOTATION = "leasehold.io/saved-at";
  public static final String REASON_ANNOTATION = "leasehold.io/reason";
  public static final String ENCRYPTED_ANNOTATION = "leasehold.io/encrypted";

  /** The reason of the version kept when the state is deleted through the backend. */
  public static final String BEFORE_DELETE = "before delete";

  private static final String UNKNOWN = "unknown";

  private final KubernetesClient client;
  private final StateNames names;

  public StateHistory(KubernetesClient client, StateNames names) {
    this.client = client;
    this.names = names;
  }

  /**
   * One kept version.
   *
   * @param serial the serial's bits (unsigned), or null for a state kept because it was unreadable
   * @param md5 base64 MD5 of its JSON, or null for versions kept before it was recorded
   */
  public record Version(
      String id,
      Long serial,
      String lineage,
      String md5,
      boolean encrypted,
      String savedAt,
      String reason,
      List<Secret> chunks) {

    /** The serial as Terraform writes it, or "unknown". */
    public String serialText() {
      return serial == null ? UNKNOWN : Long.toUnsignedString(serial);
    }

    /** Whether all its Secrets are there (a copy cut short is not a version). */
    public boolean complete() {
      return !chunks.isEmpty() && chunks.size() == chunkCount(chunks.get(0));
    }

    /** Whether this version holds the state {@code facts} and {@code md5} describe. */
    public boolean holds(StateFacts facts, String md5) {
      return serial != null
          && serial.equals(facts.getSerial())
          && facts.getLineage().equals(lineage)
          && md5 != null
          && md5.equals(this.md5);
    }
  }

  /**
   * Keeps {@code current}, a state as read, as a version; its gzip data is copied as it is, held or
   * fetched again at the version read.
   *
   * @return the new version's id
   */
  public String save(StateStore.Current current, String reason) {
    List<Secret> read = current.compressed().secrets();
    StateStore store = new StateStore(client, names);
    return create(
        newId(current.facts().serialText()),
        read.size(),
        i ->
            current.held()
                ? current.compressed().parts().get(i).base64()
                : store.refetch(read.get(i)).getData().get(StoredState.DATA_KEY),
        current.facts(),
        current.md5(),
        reason);
  }

  /** Keeps a state given as its gzip parts (a write's new version) as a version. */
  public String save(List<Chunk> parts, StateFacts facts, String md5, String reason) {
    return save(newId(facts.serialText()), parts, facts, md5, reason);
  }

  /**
   * Keeps a state given as its gzip parts as the version {@code id} (from {@link
   * #newId(StateFacts)}, named in a write's journal before the copy is made).
   */
  public String save(String id, List<Chunk> parts, StateFacts facts, String md5, String reason) {
    return create(id, parts.size(), i -> parts.get(i).base64(), facts, md5, reason);
  }

  /** A new version's id for a state with these facts: ids sort by age. */
  public static String newId(StateFacts facts) {
    return newId(facts.serialText());
  }

  /** The base64 data of a version's i-th Secret. */
  @FunctionalInterface
  private interface ChunkData {
    String of(int index);
  }

  private String create(
      String id, int count, ChunkData data, StateFacts facts, String md5, String reason) {
    List<Secret> created = new ArrayList<>();
    try {
      for (int i = 0; i < count; i++) {
        created.add(
            client
                .secrets()
                .inNamespace(names.namespace())
                .resource(
                    secret(
                        id,
                        i,
                        count,
                        data.of(i),
                        facts.serialText(),
                        facts.getLineage(),
                        md5,
                        facts.encrypted(),
                        reason))
                .create());
      }
    } catch (RuntimeException e) {
      // An incomplete version is no version: take back what was made of it.
      deleteQuietly(created);
      throw e;
    }
    return id;
  }

  /**
   * Keeps the Secrets of a state that cannot be read, exactly as they are, before a restore
   * replaces them: nothing is thrown away, not even a corrupt state.
   */
  public String saveUnreadable(List<Secret> secrets, String reason) {
    String id = newId(UNKNOWN);
    List<Secret> ordered = new ArrayList<>(secrets);
    ordered.sort(Comparator.comparingInt(x -> names.chunkIndex(x.getMetadata().getName())));
    List<Secret> created = new ArrayList<>();
    try {
      for (int i = 0; i < ordered.size(); i++) {
        Map<String, String> data = ordered.get(i).getData();
        String encoded = data == null ? null : data.get(StoredState.DATA_KEY);
        byte[] bytes = encoded == null ? new byte[0] : decodeLeniently(encoded);
        created.add(
            client
                .secrets()
                .inNamespace(names.namespace())
                .resource(
                    secret(
                        id,
                        i,
                        ordered.size(),
                        Base64.getEncoder().encodeToString(bytes),
                        UNKNOWN,
                        UNKNOWN,
                        null,
                        false,
                        reason))
                .create());
      }
    } catch (RuntimeException e) {
      deleteQuietly(created);
      throw e;
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

  /** Every Secret of the state's history, metadata only: a version's data is fetched when read. */
  private List<Secret> historySecrets() {
    return SecretMetadata.list(
        client,
        names.namespace(),
        Map.of(
            StateNames.LABEL_STATE,
            names.name(),
            WORKSPACE_LABEL,
            names.workspace(),
            HISTORY_LABEL,
            "true"));
  }

  /** Kept versions, newest first; their Secrets without data (see {@link #compressed}). */
  public List<Version> list() {
    List<Secret> secrets = historySecrets();
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
                  serial(annotation(first, SERIAL_ANNOTATION)),
                  annotation(first, LINEAGE_ANNOTATION),
                  annotation(first, MD5_ANNOTATION),
                  "true".equals(annotation(first, ENCRYPTED_ANNOTATION)),
                  annotation(first, SAVED_AT_ANNOTATION),
                  annotation(first, REASON_ANNOTATION),
                  List.copyOf(chunks)));
        });
    versions.sort(Comparator.comparing(Version::id).reversed());
    return versions;
  }

  /** The kept version holding the state {@code facts} and {@code md5} describe, if any. */
  public Optional<Version> find(StateFacts facts, String md5) {
    return list().stream().filter(v -> v.holds(facts, md5)).findFirst();
  }

  /** The kept version with this id, if any. */
  public Optional<Version> find(String id) {
    return list().stream().filter(v -> v.id().equals(id)).findFirst();
  }

  /** The state JSON of a kept version. */
  public byte[] load(Version version) throws StateUnreadableException {
    return StoredState.decompress(names, compressed(version));
  }

  /** The gzip data of a kept version, fetched and decoded Secret by Secret. */
  public StoredState.Compressed compressed(Version version) throws StateUnreadableException {
    List<Secret> secrets = withData(version);
    List<Chunk> parts = new ArrayList<>();
    for (Secret s : secrets) {
      parts.add(StoredState.decode(s));
    }
    return new StoredState.Compressed(version.chunks(), List.copyOf(parts));
  }

  /**
   * A kept version's Secrets with their data, in order.
   *
   * @throws StateUnreadableException when one is missing
   */
  public List<Secret> withData(Version version) throws StateUnreadableException {
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
    List<Secret> secrets = new ArrayList<>();
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
      secrets.add(s);
    }
    return secrets;
  }

  /**
   * Drops the oldest versions beyond the newest {@code keep}, never one of {@code kept} nor one an
   * unfinished write (see {@link WriteJournal}) still needs. Returns how many were dropped.
   */
  public int prune(int keep, Set<String> kept) {
    Set<String> needed = new java.util.HashSet<>(kept);
    new WriteJournal(client, names)
        .read()
        .ifPresent(
            j -> {
              if (j.from() != null) {
                needed.add(j.from());
              }
              if (j.to() != null) {
                needed.add(j.to());
              }
            });
    kept = needed;
    List<Version> versions = list();
    int left = 0;
    int dropped = 0;
    for (Version v : versions) {
      if (kept.contains(v.id())) {
        continue;
      }
      if (left < keep) {
        left++;
        continue;
      }
      delete(v);
      dropped++;
    }
    return dropped;
  }

  /**
   * Deletes every Secret of the state's history, complete versions or not (the state is deleted
   * with deletionPolicy Delete), each at the version listed. Returns how many were deleted.
   */
  public int deleteAll() {
    List<Secret> secrets = historySecrets();
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
      } catch (KubernetesClientException e) {
        if (e.getCode() != 404) {
          throw e;
        }
      }
    }
    return deleted;
  }

  /** Deletes one version, each Secret at the version listed. */
  public void delete(Version version) {
    for (Secret s : version.chunks()) {
      try {
        client
            .secrets()
            .inNamespace(names.namespace())
            .resource(s)
            .lockResourceVersion(s.getMetadata().getResourceVersion())
            .delete();
      } catch (KubernetesClientException e) {
        if (e.getCode() != 404) {
          throw e;
        }
      }
    }
  }

  /**
   * Why an absent state is a fault rather than "no state yet": versions are kept in history but the
   * state was not deleted through the backend, so its Secret was removed by hand. Guessing (serving
   * nothing, or accepting a fresh state) would lose it. The copy a write in progress (or cut short)
   * made of its new version is not yet the state, and a copy cut short is no version: neither
   * counts, so that a first write under way or interrupted reads as "no state yet" until its
   * journal is settled, not as a state deleted by hand.
   */
  public static Optional<String> missingState(KubernetesClient client, StateNames names) {
    Optional<String> writing = new WriteJournal(client, names).read().map(WriteJournal.Entry::to);
    List<Version> versions =
        new StateHistory(client, names)
            .list().stream()
                .filter(Version::complete)
                .filter(v -> writing.isEmpty() || !v.id().equals(writing.get()))
                .toList();
    if (versions.isEmpty() || BEFORE_DELETE.equals(versions.get(0).reason())) {
      return Optional.empty();
    }
    Version latest = versions.get(0);
    return Optional.of(
        "state Secret "
            + names.secretName()
            + " is missing but "
            + versions.size()
            + " version(s) are kept in history (the latest: serial "
            + latest.serialText()
            + ", id "
            + latest.id()
            + "): it was deleted outside leasehold. Restore a version with POST"
            + " /v1/states/"
            + names.namespace()
            + "/"
            + names.name()
            + "/history/<id>/restore (list them at .../history)");
  }

  private void deleteQuietly(List<Secret> secrets) {
    for (Secret s : secrets) {
      try {
        client.secrets().inNamespace(names.namespace()).resource(s).delete();
      } catch (RuntimeException ignored) {
        // Left behind, it is an incomplete version that load() refuses.
      }
    }
  }

  /** Time first, so that ids sort by age; a random tail keeps two in one millisecond apart. */
  private static String newId(String serial) {
    return String.format(
        "%013x-%s-%04x",
        System.currentTimeMillis(), serial, ThreadLocalRandom.current().nextInt(0x10000));
  }

  private static Long serial(String text) {
    if (text == null || text.isEmpty() || !text.chars().allMatch(Character::isDigit)) {
      return null;
    }
    try {
      return Long.parseUnsignedLong(text);
    } catch (NumberFormatException e) {
      return null;
    }
  }

  private Secret secret(
      String id,
      int index,
      int count,
      String data,
      String serial,
      String lineage,
      String md5,
      boolean encrypted,
      String reason) {
    String name = ("lh-history-" + names.workspace() + "-" + names.name() + "-" + id + "-" + index);
    SecretBuilder b =
        new SecretBuilder()
            .withNewMetadata()
            .withName(name)
            .withNamespace(names.namespace())
            .addToLabels(StateNames.LABEL_STATE, names.name())
            .addToLabels(WORKSPACE_LABEL, names.workspace())
            .addToLabels(HISTORY_LABEL, "true")
            .addToAnnotations(VERSION_ANNOTATION, id)
            .addToAnnotations(SERIAL_ANNOTATION, serial)
            .addToAnnotations(LINEAGE_ANNOTATION, lineage)
            .addToAnnotations(CHUNK_ANNOTATION, index + "/" + count)
            .addToAnnotations(SAVED_AT_ANNOTATION, Instant.now().toString())
            .addToAnnotations(REASON_ANNOTATION, reason)
            .addToAnnotations("encoding", "gzip")
            .endMetadata()
            .withType("Opaque")
            .withData(Map.of(StoredState.DATA_KEY, data));
    if (md5 != null) {
      b.editMetadata().addToAnnotations(MD5_ANNOTATION, md5).endMetadata();
    }
    if (encrypted) {
      b.editMetadata().addToAnnotations(ENCRYPTED_ANNOTATION, "true").endMetadata();
    }
    return b.build();
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
