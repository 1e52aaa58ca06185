package io.leasehold.backend;

import io.leasehold.lock.LockInfo;
import java.util.Optional;

/**
 * What state writes need from the state's lock, one call each: whether a write may go ahead, and
 * taking and releasing the lock for a change leasehold makes itself (a restore). The lock's rules
 * live behind it; writes never read the Lease themselves.
 */
interface WriteLock {

  /**
   * Why a write or delete carrying {@code lockId} by {@code who} may not go ahead now, if it may
   * not (another identity's lock needs the force-unlock verb).
   */
  Optional<WriteRefusal.Problem> refusal(
      StateBackend.Target target, String lockId, Requester who, String what);

  /** Takes the lock for {@code info} now, or says who holds it. */
  StateBackend.LockAttempt tryLock(StateBackend.Target target, LockInfo info, Requester who);

  /** Releases the lock held with the LockInfo JSON in {@code body}. */
  Reply unlock(StateBackend.Target target, byte[] body, Requester who);
}
