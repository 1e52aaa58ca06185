package io.leasehold.lock;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Base64;

/**
 * Who asks the lock service for something: an authenticated user of the HTTP backend (a person, a
 * pipeline, a runner Job's pod) or leasehold itself. A lock belongs to the identity that took it.
 */
public interface Caller {

  /** The authenticated identity (a Kubernetes user name), compared to decide who owns a lock. */
  String identity();

  /** Whether this caller is a pod of the runner Job with UID {@code jobUid} (blocking). */
  boolean isPodOfJob(String namespace, String jobUid);

  /** For messages and Events. */
  String describe();

  /**
   * The pod this caller's bound ServiceAccount token names, when it does: a lock it takes is
   * released once that pod is gone or has ended ({@code spec.lock.releaseVanishedPods}).
   */
  default java.util.Optional<HolderPod> pod() {
    return java.util.Optional.empty();
  }

  /** leasehold itself: admits Jobs, takes the deletion lock. */
  Caller LEASEHOLD = of("leasehold", "leasehold");

  /** A caller that is no Job's pod. */
  static Caller of(String identity, String description) {
    return new Caller() {
      @Override
      public String identity() {
        return identity;
      }

      @Override
      public boolean isPodOfJob(String namespace, String jobUid) {
        return false;
      }

      @Override
      public String describe() {
        return description;
      }

      @Override
      public String toString() {
        return description;
      }
    };
  }

  /**
   * A short, fixed-size digest of an identity: what a ticket in line records, so the Lease stays
   * small and names no one.
   */
  static String digest(String identity) {
    try {
      byte[] hash =
          MessageDigest.getInstance("SHA-256").digest(identity.getBytes(StandardCharsets.UTF_8));
      return Base64.getUrlEncoder().withoutPadding().encodeToString(hash).substring(0, 22);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
