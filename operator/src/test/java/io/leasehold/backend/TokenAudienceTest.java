package io.leasehold.backend;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.leasehold.api.TerraformState;
import io.leasehold.support.OperatorHarness;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * The backend accepts only tokens issued for the audience {@code leasehold}: a pod's default token
 * (issued for the API server), which could be replayed against the API server, is refused unless a
 * migration setting allows it. The fake TokenReview answers as the API server does: a review that
 * names audiences authenticates a token only when one of the token's audiences is among them, and
 * says which in {@code status.audiences}.
 */
class TokenAudienceTest {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static final String API_SERVER = "https://kubernetes.default.svc.cluster.local";

  /** Token -> the audiences it was issued for. */
  private static final Map<String, List<String>> TOKENS =
      Map.of(
          "projected", List.of("leasehold"),
          "default-token", List.of(API_SERVER),
          "other-audience", List.of("vault"));

  private static OperatorHarness harness;
  private static final List<JsonNode> reviews = new ArrayList<>();

  @BeforeAll
  static void start() {
    harness = OperatorHarness.start();
    var server = harness.api().mockServer();
    server
        .expect()
        .post()
        .withPath("/apis/authentication.k8s.io/v1/tokenreviews")
        .andReply(200, r -> review(r.getBody().readUtf8()))
        .always();
    server
        .expect()
        .post()
        .withPath("/apis/authorization.k8s.io/v1/subjectaccessreviews")
        .andReply(
            200,
            r -> {
              try {
                ObjectNode review = (ObjectNode) JSON.readTree(r.getBody().readUtf8());
                review.putObject("status").put("allowed", true);
                return review;
              } catch (Exception e) {
                throw new IllegalStateException(e);
              }
            })
        .always();
    TerraformState s = new TerraformState();
    s.getMetadata().setName("aud");
    s.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(s).create();
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  private static synchronized Object review(String body) {
    try {
      ObjectNode review = (ObjectNode) JSON.readTree(body);
      reviews.add(review.deepCopy());
      List<String> asked = new ArrayList<>();
      review.at("/spec/audiences").forEach(a -> asked.add(a.asText()));
      if (asked.isEmpty()) {
        asked.add(API_SERVER); // The API server's own audience.
      }
      List<String> issued = TOKENS.get(review.at("/spec/token").asText());
      ObjectNode status = review.putObject("status");
      if (review.at("/spec/token").asText().equals("unaware-token")) {
        // An authenticator that ignores audiences: it authenticates and names none.
        status.put("authenticated", true).putObject("user").put("username", "someone");
        return review;
      }
      List<String> match =
          issued == null ? List.of() : issued.stream().filter(asked::contains).toList();
      if (match.isEmpty()) {
        status
            .put("authenticated", false)
            .put(
                "error",
                issued == null
                    ? "invalid bearer token"
                    : "token audiences "
                        + issued
                        + " is invalid for the target audiences "
                        + asked);
      } else {
        status.put("authenticated", true);
        status
            .putArray("audiences")
            .addAll(match.stream().map(JSON.getNodeFactory()::textNode).toList());
        ObjectNode user = status.putObject("user");
        user.put("username", "system:serviceaccount:" + NAMESPACE + ":runner");
      }
      return review;
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }

  private static HttpResponse<String> get(String url, String token) throws Exception {
    String basic =
        Base64.getEncoder().encodeToString(("runner:" + token).getBytes(StandardCharsets.UTF_8));
    return HttpClient.newHttpClient()
        .send(
            HttpRequest.newBuilder(URI.create(url + NAMESPACE + "/aud"))
                .header("Authorization", "Basic " + basic)
                .timeout(Duration.ofSeconds(20))
                .build(),
            HttpResponse.BodyHandlers.ofString());
  }

  private static HttpBackend serve(KubernetesAccess.Tokens tokens) {
    return io.leasehold.cli.Replica.serve(
        harness.operator(),
        new io.leasehold.cli.Replica.Backend(
            new KubernetesAccess(harness.client(), tokens),
            JobPods.NONE,
            new HttpBackend.Config("127.0.0.1", 0, Duration.ofMinutes(1)),
            1024 * 1024));
  }

  @Test
  @DisplayName(
      "By default a projected token for audience leasehold is accepted, and the pod's default"
          + " API-server token is refused with 401 saying to mount a projected token")
  void onlyLeaseholdAudience() throws Exception {
    try (HttpBackend backend = serve(KubernetesAccess.Tokens.DEFAULT)) {
      assertThat(get(backend.url(), "projected").statusCode()).isEqualTo(404);
      assertThat(reviews.get(reviews.size() - 1).at("/spec/audiences").toString())
          .isEqualTo("[\"leasehold\"]");

      HttpResponse<String> replayable = get(backend.url(), "default-token");
      assertThat(replayable.statusCode()).isEqualTo(401);
      assertThat(replayable.body())
          .contains("invalid for the target audiences")
          .contains("serviceAccountToken.audience: leasehold");
      assertThat(get(backend.url(), "other-audience").statusCode()).isEqualTo(401);
    }
  }

  @Test
  @DisplayName(
      "With API-server tokens allowed for a migration, the default token is accepted too, but a"
          + " token for another audience still is not")
  void migrationSetting() throws Exception {
    try (HttpBackend backend = serve(new KubernetesAccess.Tokens("leasehold", true))) {
      assertThat(get(backend.url(), "default-token").statusCode()).isEqualTo(404);
      assertThat(get(backend.url(), "projected").statusCode()).isEqualTo(404);
      assertThat(get(backend.url(), "other-audience").statusCode()).isEqualTo(401);
    }
  }

  @Test
  @DisplayName(
      "An authenticator that ignores audiences (authenticated, but no status.audiences) does not"
          + " prove a token was issued for leasehold, so it is refused")
  void audienceUnawareAuthenticatorRefused() throws Exception {
    try (HttpBackend backend = serve(KubernetesAccess.Tokens.DEFAULT)) {
      HttpResponse<String> r = get(backend.url(), "unaware-token");
      assertThat(r.statusCode()).isEqualTo(401);
      assertThat(r.body()).contains("audience 'leasehold'");
    }
  }
}
