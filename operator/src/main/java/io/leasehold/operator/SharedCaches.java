package io.leasehold.operator;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.javaoperatorsdk.operator.api.reconciler.IndexedResourceCache;
import io.javaoperatorsdk.operator.processing.event.ResourceID;
import io.javaoperatorsdk.operator.processing.event.source.informer.InformerEventSource;
import io.leasehold.api.TerraformState;
import io.leasehold.lock.LockService;
import io.leasehold.state.StateNames;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;
import java.util.stream.Stream;

/**
 * The one informer per kind that this replica runs, shared: the reconciler's event sources are also
 * where the lock service reads Leases, where the HTTP backend looks up TerraformStates and hears
 * that a lock changed hands. Informers run on every replica, leader or not.
 */
public final class SharedCaches implements LockService.LeaseSource {

  private final KubernetesClient client;
  private volatile IndexedResourceCache<TerraformState> states;
  private volatile InformerEventSource<Lease, TerraformState> leases;
  private final List<Consumer<Lease>> leaseListeners = new CopyOnWriteArrayList<>();

  SharedCaches(KubernetesClient client) {
    this.client = client;
  }

  void bind(
      IndexedResourceCache<TerraformState> states,
      InformerEventSource<Lease, TerraformState> leases) {
    this.states = states;
    this.leases = leases;
  }

  /** A TerraformState from the cache, or from the API when the cache has not seen it (yet). */
  public TerraformState state(String namespace, String name) {
    IndexedResourceCache<TerraformState> cache = states;
    if (cache != null) {
      Optional<TerraformState> cached = cache.get(new ResourceID(name, namespace));
      if (cached.isPresent()) {
        return cached.get();
      }
    }
    return client.resources(TerraformState.class).inNamespace(namespace).withName(name).get();
  }

  /** The namespaces that hold a TerraformState, as cached. */
  public Set<String> stateNamespaces() {
    IndexedResourceCache<TerraformState> cache = states;
    return cache == null
        ? Set.of()
        : cache
            .list()
            .map(s -> s.getMetadata().getNamespace())
            .collect(java.util.stream.Collectors.toCollection(java.util.TreeSet::new));
  }

  /** A TerraformState from the cache only (null when it has not seen one). */
  public TerraformState cachedState(String namespace, String name) {
    IndexedResourceCache<TerraformState> cache = states;
    return cache == null ? null : cache.get(new ResourceID(name, namespace)).orElse(null);
  }

  @Override
  public Optional<Lease> cached(String namespace, String name) {
    InformerEventSource<Lease, TerraformState> source = leases;
    return source == null ? Optional.empty() : source.get(new ResourceID(name, namespace));
  }

  @Override
  public void written(Lease before, Lease after) {
    InformerEventSource<Lease, TerraformState> source = leases;
    if (source == null || after == null) {
      return;
    }
    Map<String, String> labels = after.getMetadata().getLabels();
    String state = labels == null ? null : labels.get(StateNames.LABEL_SUFFIX);
    if (state == null) {
      return;
    }
    ResourceID primary = new ResourceID(state, after.getMetadata().getNamespace());
    if (before == null) {
      source.handleRecentResourceCreate(primary, after);
    } else {
      source.handleRecentResourceUpdate(primary, after, before);
    }
  }

  /**
   * The same caches for writers whose Lease changes the reconciler must hear about (the HTTP
   * backend): their writes are not put in the reconciler's cache ahead of the watch, since the Java
   * Operator SDK would then take the watch event for the reconciler's own and not reconcile.
   */
  public LockService.LeaseSource forBackend() {
    SharedCaches caches = this;
    return new LockService.LeaseSource() {
      @Override
      public Optional<Lease> cached(String namespace, String name) {
        return caches.cached(namespace, name);
      }

      @Override
      public void onChange(Consumer<Lease> listener) {
        caches.onChange(listener);
      }
    };
  }

  /** The lock Leases as cached. */
  public Stream<Lease> leases() {
    InformerEventSource<Lease, TerraformState> source = leases;
    return source == null ? Stream.empty() : source.list(l -> true);
  }

  /** Told of every change to a lock Lease (a watch event), deletions included. */
  @Override
  public void onChange(Consumer<Lease> listener) {
    leaseListeners.add(listener);
  }

  void leaseChanged(Lease lease) {
    for (Consumer<Lease> listener : leaseListeners) {
      listener.accept(lease);
    }
  }
}
