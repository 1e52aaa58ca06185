package io.leasehold.kube;

import io.fabric8.kubernetes.client.informers.ResourceEventHandler;
import java.util.function.Consumer;

/** An informer handler that only needs each object's latest version, whatever the event. */
public final class OnChange<T> implements ResourceEventHandler<T> {

  private final Consumer<T> changed;
  private final boolean deletes;

  private OnChange(Consumer<T> changed, boolean deletes) {
    this.changed = changed;
    this.deletes = deletes;
  }

  /** Told of additions and updates. */
  public static <T> OnChange<T> of(Consumer<T> changed) {
    return new OnChange<>(changed, false);
  }

  /** Told of additions, updates and deletions (with the last version seen). */
  public static <T> OnChange<T> includingDeletes(Consumer<T> changed) {
    return new OnChange<>(changed, true);
  }

  @Override
  public void onAdd(T obj) {
    changed.accept(obj);
  }

  @Override
  public void onUpdate(T oldObj, T newObj) {
    changed.accept(newObj);
  }

  @Override
  public void onDelete(T obj, boolean deletedFinalStateUnknown) {
    if (deletes) {
      changed.accept(obj);
    }
  }
}
