package io.leasehold.lock;

import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.Optional;

/**
 * The pod a lock was taken from: a bound ServiceAccount token names its pod (by name and UID), and
 * a pod runs under a ServiceAccount of its own namespace. Recorded on the lock Lease beside the
 * lock it took ({@value LeaseLock#HOLDER_POD_ANNOTATION}), so that the lock of a pod that is gone
 * or has ended can be released.
 */
public record HolderPod(String namespace, String name, String uid) {

  /** Longest namespace (a DNS label), pod name (a DNS subdomain) and UID recorded. */
  static final int MAX_NAMESPACE = 63;

  static final int MAX_NAME = 253;
  static final int MAX_UID = 64;

  /** What the annotation takes at most, its key and the lock ID it is bound to aside. */
  static final int MAX_STORED = MAX_NAMESPACE + MAX_NAME + MAX_UID + 64;

  private static final String SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:";
  private static final ObjectMapper JSON = new ObjectMapper();

  /**
   * The pod a requester's bound token names: its user is {@code system:serviceaccount:NS:NAME} and
   * the token carries the pod's name and UID. Empty for any other requester, and for values that
   * are not a namespace, pod name and UID.
   */
  public static Optional<HolderPod> of(String user, String podName, String podUid) {
    if (user == null || !user.startsWith(SERVICE_ACCOUNT_PREFIX) || podName == null) {
      return Optional.empty();
    }
    String rest = user.substring(SERVICE_ACCOUNT_PREFIX.length());
    int colon = rest.indexOf(':');
    if (colon <= 0) {
      return Optional.empty();
    }
    HolderPod pod = new HolderPod(rest.substring(0, colon), podName, podUid);
    return pod.valid() ? Optional.of(pod) : Optional.empty();
  }

  private boolean valid() {
    return part(namespace, MAX_NAMESPACE) && part(name, MAX_NAME) && part(uid, MAX_UID);
  }

  private static boolean part(String s, int max) {
    return s != null
        && !s.isEmpty()
        && s.length() <= max
        && s.chars().allMatch(c -> c > 0x20 && c < 0x7f && c != '/');
  }

  /** {@code namespace/name}, for status, Events and messages. */
  public String describe() {
    return namespace + "/" + name;
  }

  @Override
  public String toString() {
    return describe() + " (uid " + uid + ")";
  }

  /** The annotation's value: this pod, bound to the lock ID it took. */
  record Record(
      @JsonProperty("lockId") String lockId,
      @JsonProperty("namespace") String namespace,
      @JsonProperty("name") String name,
      @JsonProperty("uid") String uid) {}

  String toJson(String lockId) {
    try {
      return JSON.writeValueAsString(new Record(lockId, namespace, name, uid));
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }

  /**
   * The pod recorded in {@code json} for lock {@code lockId}: empty when nothing is recorded, when
   * it was recorded for another lock ID (the Lease was rewritten by a client that left the
   * annotation behind), or when it cannot be read.
   */
  static Optional<HolderPod> parse(String json, String lockId) {
    if (json == null || json.isBlank() || lockId == null) {
      return Optional.empty();
    }
    try {
      Record r = JSON.readValue(json, Record.class);
      if (r == null || !lockId.equals(r.lockId())) {
        return Optional.empty();
      }
      HolderPod pod = new HolderPod(r.namespace(), r.name(), r.uid());
      return pod.valid() ? Optional.of(pod) : Optional.empty();
    } catch (JsonProcessingException | RuntimeException e) {
      return Optional.empty();
    }
  }
}
