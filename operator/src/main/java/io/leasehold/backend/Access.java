package io.leasehold.backend;

/**
 * Who may do what through the backend. Both methods block (they may ask the API server) and end the
 * request with a {@link ReplyException} (401, 403) that says what is missing.
 */
public interface Access {

  /**
   * The embedded mode's policy: nobody is authenticated and everything is allowed. A Basic-auth
   * user name, if sent, is kept as the requester's name (for Events), never trusted for more.
   */
  Access NONE =
      new Access() {
        @Override
        public Requester authenticate(String authorization) {
          if (authorization != null && authorization.regionMatches(true, 0, "Basic ", 0, 6)) {
            try {
              String decoded =
                  new String(
                      java.util.Base64.getDecoder().decode(authorization.substring(6).trim()),
                      java.nio.charset.StandardCharsets.UTF_8);
              int colon = decoded.indexOf(':');
              String user = colon < 0 ? decoded : decoded.substring(0, colon);
              if (!user.isBlank()) {
                return new Requester(
                    user + " (unauthenticated)", null, java.util.List.of(), java.util.Map.of());
              }
            } catch (IllegalArgumentException ignored) {
              // Not base64: anonymous.
            }
          }
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

  /**
   * Authenticates a request by its {@code Authorization} header or, when it sends none, by the
   * client certificate its TLS connection presented (verified against the client CA during the
   * handshake). Implementations that do not take certificates ignore it.
   */
  default Requester authenticate(
      String authorization, java.util.Optional<java.security.cert.X509Certificate> certificate) {
    return authenticate(authorization);
  }

  void authorize(Requester who, Verb verb, String namespace, String name);
}
