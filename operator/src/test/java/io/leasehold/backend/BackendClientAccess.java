package io.leasehold.backend;

import io.leasehold.lock.LockInfo;

/** Status-code view of {@link BackendClient} for tests outside this package. */
public final class BackendClientAccess {
  private final BackendClient client;

  public BackendClientAccess(String base) {
    this.client = new BackendClient(base);
  }

  public static LockInfo lockInfo(String id, String who) {
    return BackendClient.lockInfo(id, who);
  }

  /** A status with the body that came with it. */
  public record Answer(int status, String body) {}

  public Answer lockAnswer(String state, LockInfo info, String query) throws Exception {
    var r = client.lock(state, info, query);
    return new Answer(r.status(), r.body());
  }

  public int lock(String state, LockInfo info, String query) throws Exception {
    return client.lock(state, info, query).status();
  }

  public int lockQuietly(String state, LockInfo info, String query) {
    try {
      return lock(state, info, query);
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }

  public int post(String state, String lockId, String json) throws Exception {
    return client.post(state, lockId, json).status();
  }

  public int unlock(String state, LockInfo info) throws Exception {
    return client.unlock(state, info).status();
  }
}
