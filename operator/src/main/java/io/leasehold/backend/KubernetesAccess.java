package io.leasehold.backend;

import io.fabric8.kubernetes.api.model.authentication.TokenReview;
import io.fabric8.kubernetes.api.model.authentication.TokenReviewBuilder;
import io.fabric8.kubernetes.api.model.authorization.v1.SubjectAccessReview;
import io.fabric8.kubernetes.api.model.authorization.v1.SubjectAccessReviewBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.leasehold.api.TerraformState;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Base64;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Authentication with a ServiceAccount token as the Basic-auth password, checked by a TokenReview;
 * authorisation with a SubjectAccessReview on {@code terraformstates/state} in group {@code
 * leasehold.io}. Answers are cached briefly so a Terraform run does not review its token on every
 * request.
 */
public final class KubernetesAccess implements Access {

  public static final String SUBRESOURCE = "state";

  /**
   * How long an accepted token's review is used: as long as the API server keeps its own (10 s), so
   * a token is refused soon after the API server refuses it (its pod deleted, its ServiceAccount
   * gone). Past its expiry the API server accepts a token for a minute of clock skew; a review kept
   * from before its expiry never outlasts that.
   */
  private static final long AUTHN_TTL_NANOS = 10_000_000_000L;

  private static final long AUTHZ_TTL_NANOS = 30_000_000_000L;
  private static final int CACHE_LIMIT = 10_000;

  private record Cached<T>(T value, long until) {}

  /** The audience runners' projected ServiceAccount tokens must be issued for. */
  public static final String AUDIENCE = "leasehold";

  /**
   * Which tokens are accepted.
   *
   * @param audience the audience a token must be issued for ({@code serviceAccountToken.audience}
   *     of the runner's projected volume)
   * @param acceptApiServerTokens also accept tokens issued for the API server (the pods' default
   *     token), for a migration; such a token sent to leasehold could be replayed against the API
   *     server, so this is off unless asked for
   */
  public record Tokens(String audience, boolean acceptApiServerTokens) {
    public Tokens {
      if (audience == null || audience.isBlank()) {
        throw new IllegalArgumentException("the token audience must not be empty");
      }
    }

    public static final Tokens DEFAULT = new Tokens(AUDIENCE, false);
  }

  private static final org.slf4j.Logger LOG =
      org.slf4j.LoggerFactory.getLogger(KubernetesAccess.class);

  private final KubernetesClient client;
  private final Tokens accepted;
  private final Map<String, Cached<Requester>> tokens = new ConcurrentHashMap<>();
  private final Map<String, Cached<Boolean>> decisions = new ConcurrentHashMap<>();
  private final java.util.Set<String> warnedApiServerTokens = ConcurrentHashMap.newKeySet();

  public KubernetesAccess(KubernetesClient client) {
    this(client, Tokens.DEFAULT);
  }

  public KubernetesAccess(KubernetesClient client, Tokens accepted) {
    this.client = client;
    this.accepted = accepted;
  }

  /**
   * A request with no {@code Authorization} header whose TLS connection presented a verified client
   * certificate is the certificate's subject: its common name is the user and its organisations the
   * groups, as the Kubernetes API server reads client certificates. A token, when sent, wins.
   */
  @Override
  public Requester authenticate(
      String authorization, java.util.Optional<java.security.cert.X509Certificate> certificate) {
    if ((authorization == null || authorization.isBlank()) && certificate.isPresent()) {
      return fromCertificate(certificate.get());
    }
    return authenticate(authorization);
  }

  private static Requester fromCertificate(java.security.cert.X509Certificate certificate) {
    org.bouncycastle.asn1.x500.X500Name subject =
        org.bouncycastle.asn1.x500.X500Name.getInstance(
            certificate.getSubjectX500Principal().getEncoded());
    String user = null;
    List<String> groups = new java.util.ArrayList<>();
    for (var rdn : subject.getRDNs(org.bouncycastle.asn1.x500.style.BCStyle.CN)) {
      user = org.bouncycastle.asn1.x500.style.IETFUtils.valueToString(rdn.getFirst().getValue());
    }
    for (var rdn : subject.getRDNs(org.bouncycastle.asn1.x500.style.BCStyle.O)) {
      groups.add(
          org.bouncycastle.asn1.x500.style.IETFUtils.valueToString(rdn.getFirst().getValue()));
    }
    if (user == null || user.isBlank()) {
      throw unauthorized(
          "the client certificate names no user: its subject needs a common name (CN)");
    }
    return new Requester(user, null, List.copyOf(groups), Map.of());
  }

  @Override
  public Requester authenticate(String authorization) {
    if (authorization == null || authorization.isBlank()) {
      throw unauthorized(
          "no credentials: send HTTP Basic auth whose password is a Kubernetes ServiceAccount"
              + " token (backend \"http\" password, or TF_HTTP_PASSWORD)");
    }
    if (!authorization.regionMatches(true, 0, "Basic ", 0, 6)) {
      throw unauthorized("the Authorization header is not HTTP Basic auth");
    }
    String token;
    try {
      String decoded =
          new String(
              Base64.getDecoder().decode(authorization.substring(6).trim()),
              StandardCharsets.UTF_8);
      int colon = decoded.indexOf(':');
      token = colon < 0 ? decoded : decoded.substring(colon + 1);
    } catch (IllegalArgumentException e) {
      throw unauthorized("the Basic auth credentials are not base64");
    }
    if (token.isBlank()) {
      throw unauthorized("the Basic auth password is empty: it must be a ServiceAccount token");
    }
    String key = sha256(token);
    long now = System.nanoTime();
    Cached<Requester> cached = tokens.get(key);
    if (cached != null && cached.until() - now > 0) {
      return cached.value();
    }
    TokenReview review = review(token, List.of(accepted.audience()));
    if (!authenticated(review, accepted.audience())) {
      TokenReview apiServer = accepted.acceptApiServerTokens() ? review(token, List.of()) : null;
      if (apiServer == null || !authenticated(apiServer, null)) {
        String why =
            review.getStatus() == null || review.getStatus().getError() == null
                ? "it is unknown, expired, revoked, or not issued for this audience"
                : review.getStatus().getError();
        throw unauthorized(
            "the API server did not accept the token: "
                + why
                + ". The backend takes tokens issued for the audience '"
                + accepted.audience()
                + "': a projected ServiceAccount token (serviceAccountToken.audience: "
                + accepted.audience()
                + "), not the pod's default API-server token");
      }
      review = apiServer;
      String user = review.getStatus().getUser().getUsername();
      if (warnedApiServerTokens.size() < CACHE_LIMIT && warnedApiServerTokens.add(user)) {
        LOG.warn(
            "{} authenticated with an API-server token, accepted only because of"
                + " --accept-api-server-tokens: give it a projected token with audience {}",
            user,
            accepted.audience());
      }
    }
    var user = review.getStatus().getUser();
    Requester requester =
        new Requester(
            user.getUsername(),
            user.getUid(),
            user.getGroups() == null ? List.of() : List.copyOf(user.getGroups()),
            user.getExtra() == null ? Map.of() : Map.copyOf(user.getExtra()));
    if (tokens.size() > CACHE_LIMIT) {
      tokens.clear();
    }
    tokens.put(key, new Cached<>(requester, now + AUTHN_TTL_NANOS));
    return requester;
  }

  @Override
  public void authorize(Requester who, Verb verb, String namespace, String name) {
    String key = who.user() + "|" + verb + "|" + namespace + "|" + name;
    long now = System.nanoTime();
    Cached<Boolean> cached = decisions.get(key);
    boolean allowed;
    if (cached != null && cached.until() - now > 0) {
      allowed = cached.value();
    } else {
      SubjectAccessReview review;
      try {
        review =
            client
                .authorization()
                .v1()
                .subjectAccessReview()
                .create(
                    new SubjectAccessReviewBuilder()
                        .withNewSpec()
                        .withUser(who.user())
                        .withUid(who.uid())
                        .withGroups(who.groups())
                        .withExtra(who.extra())
                        .withNewResourceAttributes()
                        .withNamespace(namespace)
                        .withGroup(TerraformState.GROUP)
                        .withResource(TerraformState.PLURAL)
                        .withSubresource(SUBRESOURCE)
                        .withName(name)
                        .withVerb(verb.rbac())
                        .endResourceAttributes()
                        .endSpec()
                        .build());
      } catch (KubernetesClientException e) {
        throw ReplyException.text(
            503, "cannot check access with a SubjectAccessReview: " + e.getMessage() + "; retry");
      }
      allowed = review.getStatus() != null && Boolean.TRUE.equals(review.getStatus().getAllowed());
      if (decisions.size() > CACHE_LIMIT) {
        decisions.clear();
      }
      decisions.put(key, new Cached<>(allowed, now + AUTHZ_TTL_NANOS));
    }
    if (!allowed) {
      throw ReplyException.text(
          403,
          who
              + " may not "
              + verb.rbac()
              + " terraformstates/"
              + SUBRESOURCE
              + " '"
              + name
              + "' in namespace "
              + namespace
              + ": grant it with a Role rule {apiGroups: [leasehold.io], resources:"
              + " [terraformstates/state], verbs: ["
              + verb.rbac()
              + "]}");
    }
  }

  private TokenReview review(String token, List<String> audiences) {
    try {
      return client
          .authentication()
          .v1()
          .tokenReviews()
          .create(
              new TokenReviewBuilder()
                  .withNewSpec()
                  .withToken(token)
                  .withAudiences(audiences.isEmpty() ? null : audiences)
                  .endSpec()
                  .build());
    } catch (KubernetesClientException e) {
      throw ReplyException.text(
          503, "cannot check the token with a TokenReview: " + e.getMessage() + "; retry");
    }
  }

  /**
   * Whether the review authenticated the token, and, when it asked for {@code audience}, whether
   * the API server confirmed it: an authenticator that ignores audiences returns none, and its
   * answer does not prove the token was issued for leasehold.
   */
  private static boolean authenticated(TokenReview review, String audience) {
    if (review.getStatus() == null
        || !Boolean.TRUE.equals(review.getStatus().getAuthenticated())
        || review.getStatus().getUser() == null) {
      return false;
    }
    return audience == null
        || (review.getStatus().getAudiences() != null
            && review.getStatus().getAudiences().contains(audience));
  }

  private static ReplyException unauthorized(String message) {
    return new ReplyException(
        Reply.text(401, message).withHeader("WWW-Authenticate", "Basic realm=\"leasehold\""));
  }

  private static String sha256(String token) {
    try {
      return HexFormat.of()
          .formatHex(
              MessageDigest.getInstance("SHA-256").digest(token.getBytes(StandardCharsets.UTF_8)));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
