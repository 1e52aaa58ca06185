package io.leasehold.fault;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.TerraformState;
import io.leasehold.backend.BackendClientAccess;
import io.leasehold.cli.Replica;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.ReplicaLiveness;
import io.leasehold.lock.Ticket;
import io.leasehold.support.RawLock;
import io.leasehold.support.RunnerJobFixtures;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * A replica that dies just as the lock frees, its client first in line: the clients waiting on the
 * other replica are not kept waiting until the dead replica's heartbeat times out.
 */
class DeadReplicaTurnTest {

  private static final String NS = "default";

  @Test
  @DisplayName(
      "A replica killed as the lock frees, with its clients first in line: a client waiting on the"
          + " other replica gets the lock long before the dead replica's heartbeat times out"
          + " (it is asked directly and refuses the connection), and the dead replica's places are"
          + " marked away in that same write")
  void aDeadReplicasTurnPassesAtOnce() throws Exception {
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient admin = api.newClient()) {
      GatedReplica doomedReplica = GatedReplica.start(api, "doomed", Optional.of(NS));
      GatedReplica survivorReplica = GatedReplica.start(api, "survivor", Optional.of(NS));
      Replica doomed = doomedReplica.replica();
      Replica survivor = survivorReplica.replica();
      try {
        TerraformState s = new TerraformState();
        s.getMetadata().setName("turn");
        s.getMetadata().setNamespace(NS);
        admin.resource(s).create();
        String state = NS + "/turn";
        await().atMost(Duration.ofSeconds(20)).until(() -> lease(admin) != null);
        // The survivor sees the doomed replica's heartbeat, and where to ask it.
        String doomedRun = doomed.operator().locks().replica();
        await()
            .atMost(Duration.ofSeconds(20))
            .until(() -> survivor.operator().locks().liveness().alive(doomedRun));
        BackendClientAccess viaSurvivor = new BackendClientAccess(survivor.url());
        LockInfo holder = BackendClientAccess.lockInfo("holder", "holder@ci");
        assertThat(viaSurvivor.lock(state, holder, "")).isEqualTo(200);
        List<RawLock> onDoomed = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
          onDoomed.add(
              RawLock.send(
                  doomed.url(),
                  state,
                  BackendClientAccess.lockInfo("doomed-" + i, "d" + i + "@ci"),
                  "?wait=120s"));
          int placed = i + 1;
          await().atMost(Duration.ofSeconds(20)).until(() -> line(admin).size() == placed);
        }
        RawLock live =
            RawLock.send(
                survivor.url(),
                state,
                BackendClientAccess.lockInfo("live", "live@ci"),
                "?wait=120s");
        await().atMost(Duration.ofSeconds(20)).until(() -> line(admin).size() == 4);

        // Killed: its API calls fail, its backend closes, its heartbeat is left to time out.
        doomedReplica.gate().die();
        doomed.backend().halt();
        long killed = System.nanoTime();
        assertThat(viaSurvivor.unlock(state, holder)).isEqualTo(200);

        RawLock.Answer answer = live.answer(Duration.ofSeconds(60));
        long waitedMs = (System.nanoTime() - killed) / 1_000_000;
        System.out.printf(
            "lock granted past a dead replica's 3 places %d ms after it was killed (heartbeat"
                + " timeout %d ms)%n",
            waitedMs, ReplicaLiveness.Timing.DEFAULTS.timeout().toMillis());
        assertThat(answer.status()).as(answer.body()).isEqualTo(200);
        assertThat(waitedMs)
            .as("granted without waiting for the dead replica's heartbeat to time out")
            .isLessThan(ReplicaLiveness.Timing.DEFAULTS.timeout().toMillis() / 2);
        Lease after = lease(admin);
        assertThat(after.getSpec().getHolderIdentity()).isEqualTo("live");
        assertThat(LeaseLock.line(after).tickets())
            .as("the dead replica's places: away, kept for their clients' retries elsewhere")
            .hasSize(3)
            .allMatch(t -> t.gone() != null);
        onDoomed.forEach(RawLock::close);
      } finally {
        survivorReplica.close();
        doomedReplica.close();
      }
    }
  }

  @Test
  @DisplayName(
      "A replica killed as the lock frees, with its client first in line and a runner Job behind"
          + " it: the Job is admitted long before the dead replica's heartbeat times out")
  void aDeadReplicasTurnPassesToAJob() throws Exception {
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient admin = api.newClient()) {
      // The survivor starts first and leads (so the doomed replica's death costs no election).
      GatedReplica survivorReplica = GatedReplica.start(api, "survivor", Optional.of(NS));
      Replica survivor = survivorReplica.replica();
      await()
          .atMost(Duration.ofSeconds(30))
          .until(() -> survivor.operator().leadership().leading());
      GatedReplica doomedReplica = GatedReplica.start(api, "doomed", Optional.of(NS));
      Replica doomed = doomedReplica.replica();
      try {
        TerraformState s = new TerraformState();
        s.getMetadata().setName("turn");
        s.getMetadata().setNamespace(NS);
        admin.resource(s).create();
        String state = NS + "/turn";
        await().atMost(Duration.ofSeconds(20)).until(() -> lease(admin) != null);
        String doomedRun = doomed.operator().locks().replica();
        await()
            .atMost(Duration.ofSeconds(20))
            .until(() -> survivor.operator().locks().liveness().alive(doomedRun));
        BackendClientAccess viaSurvivor = new BackendClientAccess(survivor.url());
        LockInfo holder = BackendClientAccess.lockInfo("holder", "holder@ci");
        assertThat(viaSurvivor.lock(state, holder, "")).isEqualTo(200);
        RawLock onDoomed =
            RawLock.send(
                doomed.url(),
                state,
                BackendClientAccess.lockInfo("doomed-0", "d@ci"),
                "?wait=120s");
        await().atMost(Duration.ofSeconds(20)).until(() -> line(admin).size() == 1);
        RunnerJobFixtures.create(admin, "turn-run", "turn");
        await().atMost(Duration.ofSeconds(20)).until(() -> line(admin).size() == 2);

        doomedReplica.gate().die();
        doomed.backend().halt();
        long killed = System.nanoTime();
        assertThat(viaSurvivor.unlock(state, holder)).isEqualTo(200);

        await()
            .atMost(Duration.ofSeconds(60))
            .pollInterval(Duration.ofMillis(20))
            .until(() -> RunnerJobFixtures.running(RunnerJobFixtures.get(admin, "turn-run")));
        long waitedMs = (System.nanoTime() - killed) / 1_000_000;
        System.out.printf(
            "runner Job admitted past a dead replica's place %d ms after it was killed%n",
            waitedMs);
        assertThat(waitedMs)
            .as("admitted without waiting for the dead replica's heartbeat to time out")
            .isLessThan(ReplicaLiveness.Timing.DEFAULTS.timeout().toMillis() / 2);
        onDoomed.close();
      } finally {
        survivorReplica.close();
        doomedReplica.close();
      }
    }
  }

  private static Lease lease(KubernetesClient admin) {
    return admin.leases().inNamespace(NS).withName("lock-tfstate-default-turn").get();
  }

  private static List<Ticket> line(KubernetesClient admin) {
    return LeaseLock.line(lease(admin)).tickets();
  }
}
