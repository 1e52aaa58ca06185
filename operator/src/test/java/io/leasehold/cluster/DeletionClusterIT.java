package io.leasehold.cluster;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.DeletionPropagation;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.DeletionPolicy;
import io.leasehold.api.TerraformState;
import io.leasehold.api.TerraformStateStatus;
import io.leasehold.lock.LockInfo;
import io.leasehold.support.BackendHttp;
import io.leasehold.support.Terraform;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.UUID;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Deleting TerraformStates on a real API server: finalizers, the namespace controller and the
 * garbage collector against the operator's cleanup, and what stays for stock Terraform.
 */
class DeletionClusterIT {

  private static final Duration WAIT = Duration.ofSeconds(60);

  private static RealCluster cluster;
  private static KubernetesClient admin;
  private static String ns;
  private static String doomed;
  private static String abandoned;
  private static ClusterOperator operator;
  private static String ca;
  private static String runnerToken;

  @TempDir Path work;

  @BeforeAll
  static void start() throws Exception {
    cluster = RealCluster.get();
    admin = cluster.admin();
    ns = cluster.newNamespace("deletion");
    doomed = cluster.newNamespace("doomed");
    abandoned = cluster.newNamespace("abandoned");
    ChartInstall chart = ChartInstall.apply(cluster, ns, doomed, abandoned);
    ChartInstall.awaitCrd(admin);
    operator = ClusterOperator.start(cluster, chart, List.of(ns, doomed, abandoned), 1, List.of());
    ca = operator.caPem(WAIT);
    runnerToken = cluster.token(ns, ChartInstall.RUNNER, "leasehold", Duration.ofMinutes(30));
  }

  @AfterAll
  static void stop() {
    if (Boolean.getBoolean("leasehold.cluster.keep")) {
      return;
    }
    if (operator != null) {
      operator.close();
    }
    if (admin != null) {
      for (String n : new String[] {ns, doomed, abandoned}) {
        if (n != null) {
          admin.namespaces().withName(n).delete();
        }
      }
    }
  }

  @Test
  @DisplayName(
      "Deleting a TerraformState with deletionPolicy Retain leaves its state Secret, history and"
          + " unlocked Lease, stock Terraform's kubernetes backend still reads the state, and a"
          + " TerraformState created again adopts it")
  void retainKeepsStateForStockTerraform() throws Exception {
    String state = newState(ns, "kept", DeletionPolicy.Retain, null);
    ClusterBackend backend = backend(ns, runnerToken);
    String lineage = UUID.randomUUID().toString();
    write(backend, state, 1, lineage);
    write(backend, state, 2, lineage);

    admin.resource(tfs(ns, state)).delete();
    awaitGone(ns, state);

    Secret secret = admin.secrets().inNamespace(ns).withName("tfstate-default-" + state).get();
    assertThat(secret).as("state Secret kept").isNotNull();
    assertThat(secret.getMetadata().getLabels()).containsEntry("tfstate", "true");
    assertThat(history(ns, state)).as("history kept").hasSize(2);
    Lease lease = lease(ns, state);
    assertThat(lease).as("Lease kept").isNotNull();
    assertThat(lease.getSpec().getHolderIdentity()).as("and unlocked").isNull();

    Path kubeconfig =
        StockTerraform.kubeconfig(cluster, ns, "stock-reader", work.resolve("stock.kubeconfig"));
    Terraform stock = new Terraform(Files.createDirectories(work.resolve("stock")));
    stock.writeConfig(StockTerraform.backend(kubeconfig, ns, state));
    stock.run("init", "-input=false").assertOk();
    Terraform.Result pulled = stock.run("state", "pull").assertOk();
    assertThat(pulled.output()).contains(lineage).contains("\"serial\": 2");

    admin.resource(ClusterFixtures.state(ns, state)).create();
    await()
        .atMost(WAIT)
        .ignoreExceptions()
        .untilAsserted(
            () ->
                assertThat(ClusterFixtures.status(admin, ns, state).getState().getSerial())
                    .as("adopted by the TerraformState created again")
                    .isEqualTo(2L));
  }

  @Test
  @DisplayName(
      "Deleting a TerraformState with deletionPolicy Delete removes its state Secret, every"
          + " history Secret and the Lease, and one created again with the name starts without"
          + " state")
  void deleteRemovesEverything() {
    String state = newState(ns, "removed", DeletionPolicy.Delete, null);
    ClusterBackend backend = backend(ns, runnerToken);
    String lineage = UUID.randomUUID().toString();
    write(backend, state, 1, lineage);
    write(backend, state, 2, lineage);
    assertThat(history(ns, state)).hasSize(2);

    admin.resource(tfs(ns, state)).delete();
    awaitGone(ns, state);

    assertThat(admin.secrets().inNamespace(ns).withName("tfstate-default-" + state).get())
        .as("state Secret removed")
        .isNull();
    assertThat(history(ns, state)).as("history removed").isEmpty();
    assertThat(admin.secrets().inNamespace(ns).withName("lh-journal-default-" + state).get())
        .isNull();
    assertThat(lease(ns, state)).as("Lease removed").isNull();
    assertThat(events(ns, state)).contains("StateDeleted");

    newState(ns, state, DeletionPolicy.Delete, null);
    assertThat(backend.get(state).status()).as("no state any more").isEqualTo(404);
  }

  @Test
  @DisplayName(
      "A TerraformState deleted while a runner Job holds its lock stays, Ready False with"
          + " DeletionWaitingForRunner naming the Job, while the Job's lock is renewed and no other"
          + " Job is admitted; once the Job's pod has ended it is gone and the Lease is left free")
  void deletionWaitsForTheRunningJob() {
    String state = newState(ns, "busy", DeletionPolicy.Retain, 6);
    admin.resource(ClusterFixtures.runnerJob(ns, "busy-run", state, true)).create();
    Pod pod = ClusterFixtures.awaitRunningPod(admin, ns, "busy-run", WAIT);
    admin.resource(ClusterFixtures.runnerJob(ns, "busy-next", state, true)).create();
    await().atMost(WAIT).until(() -> ClusterFixtures.status(admin, ns, state).getQueued() == 1);
    String jobLock = lease(ns, state).getSpec().getHolderIdentity();
    assertThat(jobLock).contains("busy-run");

    admin.resource(tfs(ns, state)).delete();
    await()
        .atMost(WAIT)
        .untilAsserted(
            () -> {
              Condition ready = ready(ns, state).orElseThrow();
              assertThat(ready.getStatus()).isEqualTo("False");
              assertThat(ready.getReason()).isEqualTo("DeletionWaitingForRunner");
              assertThat(ready.getMessage()).contains("busy-run");
            });
    TerraformState waiting = tfs(ns, state);
    assertThat(waiting.getMetadata().getDeletionTimestamp()).isNotNull();
    assertThat(waiting.getMetadata().getFinalizers()).isNotEmpty();

    Instant seen = renewed(ns, state);
    await()
        .atMost(WAIT)
        .untilAsserted(
            () -> {
              Lease l = lease(ns, state);
              assertThat(l.getSpec().getHolderIdentity()).isEqualTo(jobLock);
              assertThat(renewed(ns, state))
                  .as("renewed past its 6 s duration while the deletion waits")
                  .isAfter(seen.plusSeconds(6));
            });
    assertThat(ClusterFixtures.pods(admin, ns, "busy-next")).as("nothing admitted").isEmpty();
    await()
        .atMost(WAIT)
        .untilAsserted(
            () ->
                assertThat(events(ns, "busy-next"))
                    .as("the waiting Job is told")
                    .contains("StateBeingDeleted"));
    assertThat(admin.batch().v1().jobs().inNamespace(ns).withName("busy-next").get())
        .extracting(j -> j.getSpec().getSuspend())
        .isEqualTo(true);

    ClusterFixtures.release(admin, pod);
    awaitGone(ns, state);
    Lease left = lease(ns, state);
    assertThat(left).as("Retain keeps the Lease").isNotNull();
    assertThat(left.getSpec().getHolderIdentity()).as("the Job's lock released").isNull();
    assertThat(ClusterFixtures.pods(admin, ns, "busy-next")).as("still nothing admitted").isEmpty();
  }

  @Test
  @DisplayName(
      "A Retain deletion while a backend client holds the lock waits for it, naming it"
          + " (DeletionWaitingForUnlock): a new LOCK is refused 409 and a waiting ?wait= LOCK is"
          + " answered 409 at once, while the holder still writes and unlocks; then the"
          + " TerraformState is gone and the holder's write is kept")
  void retainWaitsForTheBackendClientsLock() throws Exception {
    String state = newState(ns, "in-flight", DeletionPolicy.Retain, null);
    ClusterBackend backend = backend(ns, runnerToken);
    String lineage = UUID.randomUUID().toString();
    write(backend, state, 1, lineage);
    LockInfo holder = BackendHttp.lockInfo(UUID.randomUUID().toString(), "applying");
    assertThat(backend.lock(state, holder).status()).isEqualTo(200);
    LockInfo patient = BackendHttp.lockInfo(UUID.randomUUID().toString(), "patient");
    ClusterBackend.WaitingLock waiting = backend.lockWaiting(state, patient, "5m");
    await().atMost(WAIT).until(() -> ClusterFixtures.status(admin, ns, state).getQueued() == 1);

    admin.resource(tfs(ns, state)).delete();
    await()
        .atMost(WAIT)
        .untilAsserted(
            () -> {
              Condition ready = ready(ns, state).orElseThrow();
              assertThat(ready.getReason()).isEqualTo("DeletionWaitingForUnlock");
              assertThat(ready.getMessage()).contains(holder.id());
            });
    ClusterBackend.Answer toWaiting = waiting.answer(WAIT);
    assertThat(toWaiting).as("the waiting LOCK is answered").isNotNull();
    assertThat(toWaiting.status()).isEqualTo(409);
    ClusterBackend.Answer late =
        backend.lock(state, BackendHttp.lockInfo(UUID.randomUUID().toString(), "late"));
    assertThat(late.status()).isEqualTo(409);
    assertThat(late.body()).contains("deleted");
    assertThat(tfs(ns, state)).as("still there while the client holds the lock").isNotNull();

    ClusterBackend.Answer written =
        backend.post(
            state,
            holder.id(),
            "{\"version\":4,\"terraform_version\":\"1.11.4\",\"serial\":2,\"lineage\":\""
                + lineage
                + "\",\"outputs\":{},\"resources\":[]}");
    assertThat(written.status()).as("the holder still writes: " + written.body()).isEqualTo(200);
    assertThat(backend.unlock(state, holder).status()).isEqualTo(200);
    awaitGone(ns, state);
    assertThat(lease(ns, state).getSpec().getHolderIdentity()).isNull();
    Path kubeconfig =
        StockTerraform.kubeconfig(cluster, ns, "stock-after", work.resolve("after.kubeconfig"));
    Terraform stock = new Terraform(Files.createDirectories(work.resolve("after")));
    stock.writeConfig(StockTerraform.backend(kubeconfig, ns, state));
    stock.run("init", "-input=false").assertOk();
    assertThat(stock.run("state", "pull").assertOk().output()).contains("\"serial\": 2");
  }

  @Test
  @DisplayName(
      "A Delete deletion while stock Terraform's kubernetes backend holds the lock waits for it"
          + " (DeletionWaitingForUnlock naming its lock); the force-unlock annotation with that"
          + " lock ID releases it and the state, history and Lease are removed")
  void deleteWaitsForStockTerraformUntilForceUnlocked() throws Exception {
    String state = newState(ns, "stock-held", DeletionPolicy.Delete, null);
    write(backend(ns, runnerToken), state, 1, UUID.randomUUID().toString());
    Path kubeconfig =
        StockTerraform.kubeconfig(cluster, ns, "stock-holder", work.resolve("holder.kubeconfig"));
    Terraform stock = new Terraform(Files.createDirectories(work.resolve("holder")));
    Path gate = stock.dir().resolve("go");
    stock.writeConfig(
        StockTerraform.backend(kubeconfig, ns, state)
            + "resource \"terraform_data\" \"gate\" {\n"
            + "  provisioner \"local-exec\" {\n"
            + "    command = \"while [ ! -f "
            + gate
            + " ]; do sleep 0.1; done\"\n"
            + "  }\n"
            + "}\n");
    stock.run("init", "-input=false").assertOk();
    Process apply = stock.start("apply", "-auto-approve", "-input=false");
    try {
      await()
          .atMost(WAIT)
          .until(
              () ->
                  lease(ns, state) != null
                      && lease(ns, state).getSpec().getHolderIdentity() != null);
      String stockLock = lease(ns, state).getSpec().getHolderIdentity();

      admin.resource(tfs(ns, state)).delete();
      await()
          .atMost(WAIT)
          .untilAsserted(
              () -> {
                Condition ready = ready(ns, state).orElseThrow();
                assertThat(ready.getReason()).isEqualTo("DeletionWaitingForUnlock");
                assertThat(ready.getMessage()).contains(stockLock);
              });
      assertThat(admin.secrets().inNamespace(ns).withName("tfstate-default-" + state).get())
          .as("nothing deleted while stock Terraform holds the lock")
          .isNotNull();

      admin
          .resources(TerraformState.class)
          .inNamespace(ns)
          .withName(state)
          .edit(
              t -> {
                t.getMetadata().getAnnotations().put("leasehold.io/force-unlock", stockLock);
                return t;
              });
      awaitGone(ns, state);
    } finally {
      apply.destroyForcibly().waitFor();
    }
    assertThat(admin.secrets().inNamespace(ns).withName("tfstate-default-" + state).get()).isNull();
    assertThat(history(ns, state)).isEmpty();
    assertThat(lease(ns, state)).isNull();
  }

  @Test
  @DisplayName(
      "Deleting a namespace holding TerraformStates (Retain and Delete, one with a runner Job"
          + " holding its lock) completes: the namespace controller and the operator's finalizer"
          + " agree")
  void namespaceDeletionCompletes() {
    populate(doomed);
    admin.namespaces().withName(doomed).delete();
    awaitNamespaceGone(doomed);
  }

  @Test
  @DisplayName(
      "Deleting a namespace holding TerraformStates completes also when the namespace controller"
          + " removed their Jobs, Secrets and Leases before the operator got to them (the operator"
          + " stalled meanwhile): a lock Lease that cannot be created in a terminating namespace"
          + " holds nothing up")
  void namespaceDeletionCompletesAfterTheOperatorWasAway() {
    populate(abandoned);
    ClusterOperator.Replica replica = operator.replica(0);
    replica.pause();
    try {
      admin.namespaces().withName(abandoned).delete();
      await()
          .atMost(WAIT)
          .untilAsserted(
              () -> {
                assertThat(admin.leases().inNamespace(abandoned).list().getItems())
                    .as("the namespace controller removed the Leases")
                    .isEmpty();
                assertThat(admin.batch().v1().jobs().inNamespace(abandoned).list().getItems())
                    .isEmpty();
                assertThat(
                        admin.secrets().inNamespace(abandoned).list().getItems().stream()
                            .filter(x -> x.getMetadata().getName().startsWith("tfstate-"))
                            .toList())
                    .isEmpty();
              });
      assertThat(admin.resources(TerraformState.class).inNamespace(abandoned).list().getItems())
          .as("the TerraformStates wait for the operator's finalizer")
          .hasSize(3);
    } finally {
      replica.resume();
    }
    awaitNamespaceGone(abandoned);
  }

  /** Three TerraformStates (Retain, Delete, and Delete with a runner Job holding its lock). */
  private static void populate(String namespace) {
    String kept = newState(namespace, "kept", DeletionPolicy.Retain, null);
    String removed = newState(namespace, "removed", DeletionPolicy.Delete, null);
    String running = newState(namespace, "running", DeletionPolicy.Delete, null);
    ClusterBackend backend =
        backend(
            namespace,
            cluster.token(namespace, ChartInstall.RUNNER, "leasehold", Duration.ofMinutes(30)));
    String lineage = UUID.randomUUID().toString();
    write(backend, kept, 1, lineage);
    write(backend, removed, 1, lineage);
    admin.resource(ClusterFixtures.runnerJob(namespace, "holds", running, true)).create();
    ClusterFixtures.awaitRunningPod(admin, namespace, "holds", WAIT);
  }

  private static void awaitNamespaceGone(String namespace) {
    await()
        .atMost(Duration.ofSeconds(90))
        .untilAsserted(
            () ->
                assertThat(admin.namespaces().withName(namespace).get())
                    .as(
                        "namespace gone; TerraformStates left: %s",
                        admin
                            .resources(TerraformState.class)
                            .inNamespace(namespace)
                            .list()
                            .getItems()
                            .stream()
                            .map(
                                t ->
                                    t.getMetadata().getName()
                                        + " "
                                        + (t.getStatus() == null
                                            ? ""
                                            : t.getStatus().getConditions().stream()
                                                .map(c -> c.getReason() + ": " + c.getMessage())
                                                .toList()))
                            .toList())
                    .isNull());
  }

  @Test
  @DisplayName(
      "The operator puts no ownerReferences on state, history or Lease, so deleting a"
          + " TerraformState with foreground or orphan propagation leaves the garbage collector"
          + " nothing to take: Retain keeps the state, Delete removes it, and both complete")
  void garbageCollectionLeavesTheStateToThePolicy() {
    String kept = newState(ns, "gc-kept", DeletionPolicy.Retain, null);
    String removed = newState(ns, "gc-removed", DeletionPolicy.Delete, null);
    ClusterBackend backend = backend(ns, runnerToken);
    String lineage = UUID.randomUUID().toString();
    write(backend, kept, 1, lineage);
    write(backend, removed, 1, lineage);

    List<HasMetadata> owned = new ArrayList<>();
    for (String s : List.of(kept, removed)) {
      owned.add(admin.secrets().inNamespace(ns).withName("tfstate-default-" + s).get());
      owned.addAll(history(ns, s));
      owned.add(lease(ns, s));
    }
    owned.add(admin.configMaps().inNamespace(ns).withName("leasehold-ca").get());
    assertThat(owned).doesNotContainNull();
    assertThat(owned)
        .as("no object of a state is owned by anything")
        .allSatisfy(o -> assertThat(o.getMetadata().getOwnerReferences()).isNullOrEmpty());

    admin
        .resources(TerraformState.class)
        .inNamespace(ns)
        .withName(kept)
        .withPropagationPolicy(DeletionPropagation.FOREGROUND)
        .delete();
    admin
        .resources(TerraformState.class)
        .inNamespace(ns)
        .withName(removed)
        .withPropagationPolicy(DeletionPropagation.ORPHAN)
        .delete();
    awaitGone(ns, kept);
    awaitGone(ns, removed);
    assertThat(admin.secrets().inNamespace(ns).withName("tfstate-default-" + kept).get())
        .isNotNull();
    assertThat(history(ns, kept)).hasSize(1);
    assertThat(lease(ns, kept)).isNotNull();
    assertThat(admin.secrets().inNamespace(ns).withName("tfstate-default-" + removed).get())
        .isNull();
    assertThat(history(ns, removed)).isEmpty();
    assertThat(lease(ns, removed)).isNull();
  }

  private static String newState(
      String namespace, String name, DeletionPolicy policy, Integer leaseSeconds) {
    TerraformState state = ClusterFixtures.state(namespace, name);
    state.getSpec().setDeletionPolicy(policy);
    if (leaseSeconds != null) {
      state.getSpec().getLock().setLeaseDurationSeconds(leaseSeconds);
    }
    admin.resource(state).create();
    ClusterFixtures.awaitReady(admin, namespace, name);
    return name;
  }

  private static ClusterBackend backend(String namespace, String token) {
    return ClusterBackend.of(operator.replica(0), namespace, ca, token);
  }

  /** Writes serial {@code serial} of a state under a lock of its own, as Terraform does. */
  private static void write(ClusterBackend backend, String state, long serial, String lineage) {
    LockInfo info = BackendHttp.lockInfo(UUID.randomUUID().toString(), "writer");
    assertThat(backend.lock(state, info).status()).isEqualTo(200);
    String json =
        "{\"version\":4,\"terraform_version\":\"1.11.4\",\"serial\":"
            + serial
            + ",\"lineage\":\""
            + lineage
            + "\",\"outputs\":{},\"resources\":[]}";
    ClusterBackend.Answer written = backend.post(state, info.id(), json);
    assertThat(written.status()).as(written.body()).isEqualTo(200);
    assertThat(backend.unlock(state, info).status()).isEqualTo(200);
  }

  private static TerraformState tfs(String namespace, String name) {
    return admin.resources(TerraformState.class).inNamespace(namespace).withName(name).get();
  }

  private static void awaitGone(String namespace, String name) {
    await()
        .atMost(WAIT)
        .untilAsserted(
            () -> assertThat(tfs(namespace, name)).as("TerraformState %s deleted", name).isNull());
  }

  private static List<Secret> history(String namespace, String state) {
    return admin
        .secrets()
        .inNamespace(namespace)
        .withLabel("leasehold.io/state", state)
        .withLabel("leasehold.io/history", "true")
        .list()
        .getItems();
  }

  private static Lease lease(String namespace, String state) {
    return admin.leases().inNamespace(namespace).withName("lock-tfstate-default-" + state).get();
  }

  private static Instant renewed(String namespace, String state) {
    Lease l = lease(namespace, state);
    var t =
        l.getSpec().getRenewTime() != null
            ? l.getSpec().getRenewTime()
            : l.getSpec().getAcquireTime();
    return t.toInstant();
  }

  private static Optional<Condition> ready(String namespace, String state) {
    TerraformStateStatus s = ClusterFixtures.status(admin, namespace, state);
    if (s == null || s.getConditions() == null) {
      return Optional.empty();
    }
    return s.getConditions().stream().filter(c -> "Ready".equals(c.getType())).findFirst();
  }

  private static List<String> events(String namespace, String state) {
    return admin.v1().events().inNamespace(namespace).list().getItems().stream()
        .filter(e -> state.equals(e.getInvolvedObject().getName()))
        .map(e -> e.getReason())
        .toList();
  }
}
