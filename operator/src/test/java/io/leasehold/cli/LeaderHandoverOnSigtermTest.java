package io.leasehold.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.operator.LeaseholdOperator;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A leader process told to stop (SIGTERM, as in a rolling update) gives up the election Lease on
 * its way out, so another replica leads at its next try (within 1.8 s) rather than once the 15 s
 * lease has run out.
 */
class LeaderHandoverOnSigtermTest {

  @Test
  @DisplayName(
      "When the leading `run` process gets SIGTERM, then it clears the election Lease's holder"
          + " before it exits and the other replica leads within 2 s")
  void aLeaderStoppedBySigtermHandsLeadershipOn(@TempDir Path dir) throws Exception {
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient user = api.newClient();
        KubernetesClient b = api.newClient()) {
      List<String> holders = new CopyOnWriteArrayList<>();
      api.onStored(
          w -> {
            if (w.path().contains("/leases/" + LeaseholdOperator.LEADER_LEASE)) {
              var holder = w.object().path("spec").path("holderIdentity");
              holders.add(holder.isMissingNode() || holder.isNull() ? "" : holder.asText());
            }
          });
      Path kubeconfig = dir.resolve("kubeconfig");
      api.writeKubeconfig(kubeconfig);
      String java = ProcessHandle.current().info().command().orElseThrow();
      ProcessBuilder builder =
          new ProcessBuilder(
                  List.of(
                      java,
                      "-cp",
                      System.getProperty("java.class.path"),
                      Main.class.getName(),
                      "run",
                      "--plain-http",
                      "--http-host",
                      "127.0.0.1",
                      "--http-port",
                      "0",
                      "--management-port",
                      "0",
                      "--leader-election-namespace",
                      "default"))
              .redirectErrorStream(true)
              .redirectOutput(dir.resolve("output.log").toFile());
      Map<String, String> env = builder.environment();
      env.put("KUBECONFIG", kubeconfig.toString());
      env.put("HOSTNAME", "replica-term");
      env.put("POD_NAMESPACE", "default");
      Process leader = builder.start();
      LeaseholdOperator second = null;
      try {
        await()
            .atMost(Duration.ofSeconds(90))
            .until(() -> !leader.isAlive() || "replica-term".equals(holder(user)));
        assertThat(leader.isAlive()).as(output(dir)).isTrue();
        second =
            LeaseholdOperator.start(
                b, new LeaseholdOperator.Options(Set.of(), Optional.of("default"), "replica-b"));
        LeaseholdOperator candidate = second;
        assertThat(candidate.leadership().leading()).isFalse();

        long terminated = System.nanoTime();
        leader.destroy();
        await()
            .atMost(Duration.ofSeconds(10))
            .pollInterval(Duration.ofMillis(20))
            .until(() -> candidate.leadership().leading());
        long leads = System.nanoTime();
        assertThat(leader.waitFor(30, TimeUnit.SECONDS)).as(output(dir)).isTrue();
        System.out.printf(
            "SIGTERM handover: replica-b led %d ms after the leader got SIGTERM%n",
            (leads - terminated) / 1_000_000);
        assertThat(leader.exitValue()).as(output(dir)).isZero();
        assertThat(holders.subList(holders.lastIndexOf("replica-term"), holders.size()))
            .as("the Lease passed on through a release by the stopping leader, not an expiry")
            .containsSubsequence("replica-term", "", "replica-b");
      } finally {
        leader.destroyForcibly();
        if (second != null) {
          second.close();
        }
      }
    }
  }

  private static String holder(KubernetesClient user) {
    Lease l = user.leases().inNamespace("default").withName(LeaseholdOperator.LEADER_LEASE).get();
    return l == null || l.getSpec() == null ? null : l.getSpec().getHolderIdentity();
  }

  private static String output(Path dir) {
    try {
      return Files.readString(dir.resolve("output.log"));
    } catch (java.io.IOException e) {
      return "(no output: " + e.getMessage() + ")";
    }
  }
}
