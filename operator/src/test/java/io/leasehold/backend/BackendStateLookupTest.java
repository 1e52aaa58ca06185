package io.leasehold.backend;

import static io.leasehold.backend.BackendClient.lockInfo;
import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.mockwebserver.http.RecordedRequest;
import io.leasehold.api.TerraformState;
import io.leasehold.support.OperatorHarness;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Every backend request names a TerraformState; the backend reads it from a watch cache rather than
 * asking the API each time, yet serves a state created a moment ago and stops serving one that was
 * deleted.
 */
class BackendStateLookupTest {

  private static OperatorHarness harness;
  private static BackendClient backend;

  @BeforeAll
  static void start() {
    harness = OperatorHarness.start();
    backend = new BackendClient(harness.startBackend(1024 * 1024));
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  private static void create(String name) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(s).create();
  }

  private static List<String> stateReads(String name) throws InterruptedException {
    List<String> reads = new ArrayList<>();
    RecordedRequest r;
    while ((r = harness.api().mockServer().takeRequest(50, TimeUnit.MILLISECONDS)) != null) {
      if ("GET".equals(r.getMethod()) && r.getPath().contains("/terraformstates/" + name)) {
        reads.add(r.getPath());
      }
    }
    return reads;
  }

  @Test
  void aKnownStateIsReadFromTheWatchCache() throws Exception {
    create("cached");
    await()
        .atMost(Duration.ofSeconds(10))
        .until(() -> backend.lock("default/cached", lockInfo("warm", "a"), null).status() == 200);
    assertThat(backend.unlock("default/cached", lockInfo("warm", "a")).status()).isEqualTo(200);
    stateReads("cached");

    for (int i = 0; i < 5; i++) {
      assertThat(backend.lock("default/cached", lockInfo("id-" + i, "a"), null).status())
          .isEqualTo(200);
      assertThat(backend.get("default/cached").status()).isEqualTo(404);
      assertThat(backend.unlock("default/cached", lockInfo("id-" + i, "a")).status())
          .isEqualTo(200);
    }

    assertThat(stateReads("cached")).as("GETs of the TerraformState by the backend").isEmpty();
  }

  @Test
  void aStateCreatedAMomentAgoIsServedAtOnce() throws Exception {
    create("fresh");
    BackendClient.Response lock = backend.lock("default/fresh", lockInfo("first", "a"), null);
    assertThat(lock.status()).as(lock.body()).isEqualTo(200);
    assertThat(backend.unlock("default/fresh", lockInfo("first", "a")).status()).isEqualTo(200);
  }

  @Test
  void aDeletedStateIsNoLongerServed() throws Exception {
    create("gone");
    await().atMost(Duration.ofSeconds(10)).until(() -> backend.get("default/gone").status() == 404);
    assertThat(backend.get("default/gone").body()).contains("no state");
    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName("gone")
        .delete();
    await()
        .atMost(Duration.ofSeconds(10))
        .untilAsserted(
            () ->
                assertThat(backend.get("default/gone").body())
                    .contains("no TerraformState default/gone"));
  }
}
