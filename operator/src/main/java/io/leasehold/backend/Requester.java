package io.leasehold.backend;

import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Who sent a request, as authentication established it.
 *
 * @param user the Kubernetes user name (for a ServiceAccount, {@code
 *     system:serviceaccount:NS:NAME}), or {@code anonymous} where nothing is authenticated
 * @param uid the user's UID, when known
 * @param groups the user's groups
 * @param extra extra user information (a bound token names its pod here)
 */
public record Requester(
    String user, String uid, List<String> groups, Map<String, List<String>> extra) {

  public static final String POD_NAME = "authentication.kubernetes.io/pod-name";
  public static final String POD_UID = "authentication.kubernetes.io/pod-uid";

  public static final Requester ANONYMOUS = new Requester("anonymous", null, List.of(), Map.of());

  /** The pod a bound ServiceAccount token was issued for, when the token says. */
  public Optional<String> podName() {
    return first(POD_NAME);
  }

  public Optional<String> podUid() {
    return first(POD_UID);
  }

  private Optional<String> first(String key) {
    List<String> values = extra == null ? null : extra.get(key);
    return values == null || values.isEmpty() ? Optional.empty() : Optional.of(values.get(0));
  }

  @Override
  public String toString() {
    return podName().map(p -> user + " (pod " + p + ")").orElse(user);
  }
}
