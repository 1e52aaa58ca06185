package io.leasehold.kube;

import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.SecretBuilder;
import io.fabric8.kubernetes.client.informers.cache.BasicItemStore;
import io.fabric8.kubernetes.client.informers.cache.Cache;
import io.fabric8.kubernetes.client.informers.cache.ItemStore;
import java.util.HashMap;
import java.util.Map;
import java.util.stream.Stream;

/**
 * An informer store that keeps Secrets without their data: each data key is kept with an empty
 * value, so the cache still tells which keys a Secret has. A state Secret carries up to 1 MiB of
 * gzip'd state as base64; caching every one would hold every state in memory for as long as the
 * operator runs. What the cache is for (which Secrets exist, with which keys, at which versions)
 * needs none of it; the data is fetched when it is read.
 */
public final class MetadataOnlySecrets implements ItemStore<Secret> {

  private final BasicItemStore<Secret> store = new BasicItemStore<>(Cache::metaNamespaceKeyFunc);

  /** {@code secret} as this store keeps it: metadata, type, and its data keys with no values. */
  public static Secret strip(Secret secret) {
    if (secret.getData() == null && secret.getStringData() == null) {
      return secret;
    }
    Map<String, String> keys = new HashMap<>();
    if (secret.getData() != null) {
      secret.getData().keySet().forEach(k -> keys.put(k, ""));
    }
    if (secret.getStringData() != null) {
      secret.getStringData().keySet().forEach(k -> keys.put(k, ""));
    }
    return new SecretBuilder()
        .withApiVersion(secret.getApiVersion())
        .withKind(secret.getKind())
        .withMetadata(secret.getMetadata())
        .withType(secret.getType())
        .withImmutable(secret.getImmutable())
        .withData(keys)
        .build();
  }

  @Override
  public String getKey(Secret secret) {
    return store.getKey(secret);
  }

  @Override
  public Secret put(String key, Secret secret) {
    return store.put(key, strip(secret));
  }

  @Override
  public Secret remove(String key) {
    return store.remove(key);
  }

  @Override
  public Stream<String> keySet() {
    return store.keySet();
  }

  @Override
  public Stream<Secret> values() {
    return store.values();
  }

  @Override
  public int size() {
    return store.size();
  }

  @Override
  public Secret get(String key) {
    return store.get(key);
  }
}
