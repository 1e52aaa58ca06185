package io.leasehold.embedded;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The paths of recently deleted objects. The store keeps no history, so a watch that starts from
 * the version a client listed at misses a deletion made between the list and the watch (kubectl
 * delete and kubectl wait --for=delete list, then watch, the object by name); a watch started on a
 * name deleted lately is told so from here. Only paths are kept: a deleted state Secret's megabyte
 * is not.
 */
final class Tombstones {

  private static final int KEPT = 4096;

  private final Map<String, Boolean> deleted =
      new LinkedHashMap<>() {
        @Override
        protected boolean removeEldestEntry(Map.Entry<String, Boolean> eldest) {
          return size() > KEPT;
        }
      };

  /** Notes that the object at {@code objectPath} was (or may have been) deleted. */
  synchronized void deleted(String objectPath) {
    deleted.put(objectPath, Boolean.TRUE);
  }

  /** Notes that an object was written at {@code objectPath}: it is no longer a deleted one. */
  synchronized void written(String objectPath) {
    deleted.remove(objectPath);
  }

  synchronized boolean deletedLately(String objectPath) {
    return deleted.containsKey(objectPath);
  }
}
