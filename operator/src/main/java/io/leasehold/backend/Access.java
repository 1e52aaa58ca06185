package io.leasehold.backend;

/**
 * Who may do what through the backend. Both methods block (they may ask the API server) and end the
 * request with a {@link ReplyException} (401, 403) that says what is missing.
 */
public interface Access {

  /** The embedded mode's policy: nobody is authenticated and everything is allowed. */
  Access NONE =
      new Access() {
        @Override
        public Requester authenticate(String authorization) {
          return Requester.ANONYMOUS;
        }

        @Override
        public void authorize(Requester who, Verb verb, String namespace, String name) {}
      };

  /** What a request does to a state, as checked with a SubjectAccessReview. */
  enum Verb {
    /** GET state, history. */
    GET("get"),
    /** POST state, LOCK, UNLOCK with the holder's ID, restore from history. */
    UPDATE("update"),
    /** DELETE state. */
    DELETE("delete"),
    /** UNLOCK without the holder's ID ({@code terraform force-unlock}). */
    FORCE_UNLOCK("force-unlock");

    private final String rbac;

    Verb(String rbac) {
      this.rbac = rbac;
    }

    /** The RBAC verb on {@code terraformstates/state} in group {@code leasehold.io}. */
    public String rbac() {
      return rbac;
    }
  }

  Requester authenticate(String authorization);

  void authorize(Requester who, Verb verb, String namespace, String name);
}
