package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * Puts objects in the embedded API's store that no API server would hold (a Job or Lease with a
 * value of the wrong type), none of the API's checks made; the operator's informers hear of them as
 * of any write. For tests of the operator's tolerance of objects it cannot read.
 */
public final class UncheckedStore {

  private UncheckedStore() {}

  /**
   * Stores {@code object} with {@code method} ({@code POST} to a collection, {@code PUT} to an
   * object) and answers the store's status code.
   */
  public static int write(EmbeddedKubernetes api, String method, String path, JsonNode object) {
    return api.storeUnchecked(method, path, object.toString());
  }
}
