package io.leasehold.state;

import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.SecretBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.dsl.FilterWatchListDeletable;
import io.fabric8.kubernetes.client.dsl.Resource;
import io.leasehold.api.StateFacts;
import io.leasehold.kube.SecretMetadata;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Reads and writes a state exactly where and how Terraform's {@code kubernetes} backend keeps it
 * (gzip in Secret {@code tfstate-WS-NAME}, chunked past {@value #CHUNK_BYTES} bytes into {@code
 * -part-N} Secrets), so stock Terraform and leasehold read each other's writes. Every update
 * carries the {@code resourceVersion} it read: a concurrent change makes it fail, never lost.
 *
 * <p>A large state is never held whole: its Secrets are fetched one at a time and kept only as
 * their gzip data (the base64 text is dropped once decoded), the JSON is only ever streamed, and a
 * write goes out one Secret at a time from gzip parts.
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

  /**
   * The stored state as read from the API server: its Secrets, kept without their data for their
   * names and the versions that updates are conditional on; its gzip data when it was kept (see
   * {@link #read(boolean)}); its facts and the MD5 of its JSON.
   */
  public record Current(StoredState.Compressed compressed, StateFacts facts, String md5) {
    /** Whether the gzip data is held; when not, {@link #refetch} gives it. */
    public boolean held() {
      return !compressed.parts().isEmpty();
    }
  }

  /** The Secrets of this state as the API server has them now (main and chunks). */
  public List<Secret> secrets() {
    List<Secret> found = new ArrayList<>();
    Secret main = get(names.secretName());
    if (main != null) {
      found.add(main);
    }
    for (Secret s : chunkSecrets().list().getItems()) {
      if (names.chunkIndex(s.getMetadata().getName()) > 0) {
        found.add(s);
      }
    }
    return found;
  }

  /** The state now stored, with its gzip data held, or empty when there is none. */
  public Optional<Current> read() throws StateUnreadableException {
    return read(true);
  }

  /**
   * The state now stored, or empty when there is none. The main Secret and each chunk are fetched
   * one at a time and streamed through the checks as they come, so no more than three Secrets' data
   * is held at once besides what is kept: with {@code keepData} the gzip data of every Secret (to
   * serve it); without, nothing (a write gets it again with {@link #refetch}). A last list, of
   * metadata only, finds chunks stranded past a missing one.
   *
   * @throws StateUnreadableException when what is stored cannot be read (it is left as it is)
   */
  public Optional<Current> read(boolean keepData) throws StateUnreadableException {
    Secret main = get(names.secretName());
    if (main == null) {
      for (Secret s : unread(List.of())) {
        throw new StateUnreadableException(
            s.getMetadata().getName(),
            "Secret "
                + names.secretName()
                + " is missing but its chunk "
                + s.getMetadata().getName()
                + " exists");
      }
      return Optional.empty();
    }
    if (main.getData() == null || !main.getData().containsKey(StoredState.DATA_KEY)) {
      return Optional.empty();
    }
    List<Secret> secrets = new ArrayList<>();
    List<Chunk> parts = new ArrayList<>();
    Secret[] ahead = {main, get(names.chunkSecretName(1))};
    boolean single = ahead[1] == null;
    StoredState.ChunkStream stream =
        new StoredState.ChunkStream(
            () -> {
              Secret s = ahead[0];
              if (s == null) {
                return Optional.empty();
              }
              ahead[0] = ahead[1];
              ahead[1] = ahead[0] == null ? null : get(names.chunkSecretName(secrets.size() + 2));
              Secret kept = withoutData(s);
              secrets.add(kept);
              if (keepData) {
                try {
                  parts.add(StoredState.decode(s));
                } catch (StateUnreadableException e) {
                  throw new StoredState.ChunkUnreadable(e);
                }
              }
              return Optional.of(s);
            });
    StoredState.Inspection inspection = StoredState.inspect(names, stream, single);
    List<String> read = secrets.stream().map(s -> s.getMetadata().getName()).toList();
    for (Secret s : unread(read)) {
      throw StoredState.missingChunk(names, secrets.size(), s.getMetadata().getName());
    }
    StoredState.Compressed compressed =
        new StoredState.Compressed(List.copyOf(secrets), List.copyOf(parts));
    return Optional.of(new Current(compressed, inspection.facts(), inspection.md5()));
  }

  /**
   * The gzip data of {@code current} fetched again, Secret by Secret as the stream is read, each
   * checked to be still at the version first read.
   *
   * <p>The stream fails with a {@link StoredState.ChunkUnreadable} when a Secret changed or went.
   */
  public StoredState.ChunkStream refetch(Current current) {
    if (current.held()) {
      return new StoredState.ChunkStream(current.compressed().parts());
    }
    java.util.Iterator<Secret> next = current.compressed().secrets().iterator();
    return new StoredState.ChunkStream(
        () -> {
          if (!next.hasNext()) {
            return Optional.empty();
          }
          try {
            return Optional.of(refetch(next.next()));
          } catch (io.fabric8.kubernetes.client.KubernetesClientException e) {
            throw new StoredState.ChunkUnreadable(
                new StateUnreadableException(names.secretName(), e.getMessage(), e));
          }
        });
  }

  /**
   * Secret {@code read} as the API server has it now, data included, provided it is still at the
   * version first read.
   *
   * @throws io.fabric8.kubernetes.client.KubernetesClientException with code 409 when it changed or
   *     is gone
   */
  public Secret refetch(Secret read) {
    String name = read.getMetadata().getName();
    Secret now = get(name);
    String version = read.getMetadata().getResourceVersion();
    if (now == null || !java.util.Objects.equals(now.getMetadata().getResourceVersion(), version)) {
      throw new io.fabric8.kubernetes.client.KubernetesClientException(
          new io.fabric8.kubernetes.api.model.StatusBuilder()
              .withCode(409)
              .withReason("Conflict")
              .withMessage(
                  "Secret "
                      + name
                      + (now == null ? " is gone" : " changed")
                      + " since it was read at version "
                      + version)
              .build());
    }
    return now;
  }

  private static Secret withoutData(Secret s) {
    return new SecretBuilder(s).withData(null).withStringData(null).build();
  }

  private Secret get(String name) {
    return client.secrets().inNamespace(names.namespace()).withName(name).get();
  }

  private FilterWatchListDeletable<
          Secret, io.fabric8.kubernetes.api.model.SecretList, Resource<Secret>>
      chunkSecrets() {
    return client
        .secrets()
        .inNamespace(names.namespace())
        .withLabel(StateNames.LABEL_SUFFIX, names.name())
        .withLabel(StateNames.LABEL_WORKSPACE, names.workspace());
  }

  /**
   * Chunk Secrets of this state other than those named in {@code read}, lowest first, listed
   * without their data.
   */
  private List<Secret> unread(List<String> read) {
    return SecretMetadata.list(
            client,
            names.namespace(),
            Map.of(
                StateNames.LABEL_SUFFIX,
                names.name(),
                StateNames.LABEL_WORKSPACE,
                names.workspace()))
        .stream()
        .filter(s -> names.chunkIndex(s.getMetadata().getName()) > 0)
        .filter(s -> !read.contains(s.getMetadata().getName()))
        .sorted(
            java.util.Comparator.comparingInt(
                (Secret s) -> names.chunkIndex(s.getMetadata().getName())))
        .toList();
  }

  /**
   * Secret {@code index} of the state (0 the main one, N its {@code -part-N} chunk) as the API
   * server has it now, data included, or null when it does not exist.
   */
  public Secret secretAt(int index) {
    return get(index == 0 ? names.secretName() : names.chunkSecretName(index));
  }

  /**
   * Sets Secret {@code index} to hold {@code base64} (gzip data, base64 as in a Secret): created
   * when {@code old} is null, else updated at the version of {@code old}, keeping its other labels
   * and annotations.
   *
   * @throws io.fabric8.kubernetes.client.KubernetesClientException with code 409 when it exists
   *     already (create) or changed since {@code old} was read
   */
  public void put(int index, String base64, Secret old) {
    String name = index == 0 ? names.secretName() : names.chunkSecretName(index);
    Secret desired = secret(name, base64, old);
    if (old == null) {
      client.secrets().inNamespace(names.namespace()).resource(desired).create();
    } else {
      client.secrets().inNamespace(names.namespace()).resource(desired).update();
    }
  }

  /** Deletes one Secret of the state at the version read. */
  public void remove(Secret read) {
    client
        .secrets()
        .inNamespace(names.namespace())
        .resource(read)
        .lockResourceVersion(read.getMetadata().getResourceVersion())
        .delete();
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

  private Secret secret(String name, String base64, Secret old) {
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
        .withData(Map.of(StoredState.DATA_KEY, base64))
        .build();
  }
}
