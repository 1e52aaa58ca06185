package io.leasehold.kube;

import io.fabric8.kubernetes.client.informers.ResourceEventHandler;
import java.util.function.Consumer;

/** An informer handler that only needs each object's latest version: additions and updates. */
public final class OnChange<T> implements ResourceEventHandler<T> {

  private final Consumer<T> changed;

  private OnChange(Consumer<T> changed) {
    this.changed = changed;
  }

  /** Told of additions and updates. */
  public static <T> OnChange<T> of(Consumer<T> changed) {
    return new OnChange<>(changed);
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
  public void onDelete(T obj, boolean deletedFinalStateUnknown) {}
}
