package io.leasehold.local;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.TerraformState;
import io.leasehold.backend.Access;
import io.leasehold.backend.HttpBackend;
import io.leasehold.backend.JobPods;
import io.leasehold.backend.StateBackend;
import io.leasehold.cli.Replica;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.lock.LockInfo;
import io.leasehold.operator.LeaseholdOperator;
import java.io.IOException;
import java.io.PrintWriter;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * The two-engineers race, replayed on the embedded API: two applies on one state at once, first
 * with the lock (serialized, both changes kept), then with {@code -lock=false} (the losing write
 * refused instead of silently lost). Uses the real terraform when it is available.
 */
final class TwoEngineersDemo {

  private static final String STATE = "network";
  private final PrintWriter out;
  private final String terraform;
  private long start;

  TwoEngineersDemo(PrintWriter out, String terraform) {
    this.out = out;
    this.terraform = terraform;
  }

  int run() throws Exception {
    Optional<String> terraformVersion = terraformVersion();
    boolean haveTerraform = terraformVersion.isPresent();
    out.println(
        "leasehold demo: two engineers apply to the same Terraform state at the same time.");
    if (haveTerraform) {
      out.println(
          "The engineers run the real terraform: '"
              + terraform
              + "' ("
              + terraformVersion.get()
              + ").");
    } else {
      out.println(
          "'"
              + terraform
              + "' is not available, so the engineers' terraform is replayed as the HTTP"
              + " requests it sends (LOCK, POST, UNLOCK).");
    }
    out.println();
    out.println("Starting an in-memory Kubernetes API, the operator and the Terraform backend...");
    out.flush();
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient client = api.newClient();
        Replica backend =
            Replica.start(
                client,
                new LeaseholdOperator.Options(java.util.Set.of(), Optional.empty(), "demo"),
                new Replica.Backend(
                    Access.NONE,
                    JobPods.NONE,
                    new HttpBackend.Config("127.0.0.1", 0, Duration.ofMinutes(2)),
                    64L * 1024 * 1024,
                    this::timeline))) {
      TerraformState state = new TerraformState();
      state.getMetadata().setName(STATE);
      state.getMetadata().setNamespace("default");
      client.resource(state).create();
      String url = backend.url() + "default/" + STATE;
      out.println("  kubernetes-api:    " + api.url());
      out.println("  terraform-backend: " + url);
      out.println("  TerraformState default/" + STATE + " created.");
      out.println();
      if (haveTerraform) {
        withTerraform(url);
      } else {
        withRequests(url);
      }
      out.println();
      out.println(
          "Every lock and write above is also a Kubernetes Event on TerraformState default/"
              + STATE
              + ", and its status shows the holder and the serial.");
    }
    out.flush();
    return 0;
  }

  private void timeline(
      StateBackend.Target target, io.leasehold.backend.Requester who, String what) {
    String name = who.user().replace(" (unauthenticated)", "");
    synchronized (out) {
      out.printf("  %+7.2fs  %-6s %s%n", (System.nanoTime() - start) / 1e9, name, what);
      out.flush();
    }
  }

  // ---- with the real terraform ----

  /**
   * The lock address's {@code ?wait=}: short, under the usual proxy idle timeouts, so Terraform,
   * which cannot cancel a LOCK under way, still ends on Ctrl-C; {@link #LOCK_TIMEOUT} is the total
   * wait, over Terraform's retries, which keep its place in line.
   */
  private static final String WAIT = "25s";

  private static final String LOCK_TIMEOUT = "-lock-timeout=10m";

  private void withTerraform(String url) throws Exception {
    Path work = Files.createTempDirectory("leasehold-demo");
    try {
      Path setup = engineer(work, "setup", url, WAIT);
      Files.writeString(
          setup.resolve("main.tf"),
          backendBlock(url, WAIT) + "output \"items\" {\n  value = []\n}\n");
      terraform(setup, "init");
      start = System.nanoTime();
      out.println("Setup: an empty state is written (serial 1).");
      terraform(setup, "apply", "-auto-approve");
      out.println();

      out.println(
          "Round 1: alice adds a subnet and bob a firewall rule, both running `terraform apply`");
      out.println(
          "at the same moment. The lock address carries ?wait=25s and the apply -lock-timeout=10m,");
      out.println(
          "so the second waits in line on the server (25 s a request, keeping its place across");
      out.println(
          "Terraform's retries, and Ctrl-C still ends it) and goes the moment the first unlocks.");
      Path alice = engineer(work, "alice", url, WAIT);
      Path bob = engineer(work, "bob", url, WAIT);
      start = System.nanoTime();
      race(alice, bob, List.of());
      printState(url, "after round 1");
      out.println();

      out.println(
          "Round 2: the same race with -lock=false: nobody locks. Both read the same state and");
      out.println("both write the next serial; without leasehold the second write would silently");
      out.println("overwrite the first. Here it is refused, and that apply fails loudly.");
      Files.writeString(alice.resolve("item.auto.tfvars"), "item = \"alice-dns-record\"\n");
      Files.writeString(bob.resolve("item.auto.tfvars"), "item = \"bob-load-balancer\"\n");
      start = System.nanoTime();
      Map<String, Integer> exits = race(alice, bob, List.of("-lock=false"));
      printState(url, "after round 2");
      String loser = exits.get("alice") != 0 ? "alice" : exits.get("bob") != 0 ? "bob" : null;
      if (loser != null) {
        out.println(
            "  "
                + loser
                + " sees the failure, re-runs on the current state, and the change lands:");
        start = System.nanoTime();
        Process again = start(work.resolve(loser), List.of("apply", "-auto-approve", LOCK_TIMEOUT));
        again.getInputStream().readAllBytes();
        again.waitFor(2, TimeUnit.MINUTES);
        printState(url, "after " + loser + " re-runs");
      }
    } finally {
      deleteTree(work);
    }
  }

  private Map<String, Integer> race(Path alice, Path bob, List<String> extra) throws Exception {
    List<String> args = new ArrayList<>(List.of("apply", "-auto-approve", LOCK_TIMEOUT));
    args.addAll(extra);
    Process a = start(alice, args);
    Process b = start(bob, args);
    CompletableFuture<String> aOut = CompletableFuture.supplyAsync(() -> drain(a));
    CompletableFuture<String> bOut = CompletableFuture.supplyAsync(() -> drain(b));
    a.waitFor(3, TimeUnit.MINUTES);
    b.waitFor(3, TimeUnit.MINUTES);
    report("alice", a.exitValue(), aOut.get());
    report("bob", b.exitValue(), bOut.get());
    return Map.of("alice", a.exitValue(), "bob", b.exitValue());
  }

  private void report(String who, int exit, String output) {
    if (exit == 0) {
      out.println("  " + who + ": terraform apply succeeded");
    } else {
      String error =
          output
              .lines()
              .filter(l -> l.contains("Error") || l.contains("HTTP error"))
              .findFirst()
              .orElse("exit " + exit)
              .trim();
      out.println("  " + who + ": terraform apply FAILED (exit " + exit + "): " + error);
    }
  }

  private Path engineer(Path work, String name, String url, String wait) throws Exception {
    Path dir = Files.createDirectories(work.resolve(name));
    Files.writeString(dir.resolve("main.tf"), backendBlock(url, wait) + accumulating(url));
    String item = name.equals("alice") ? "alice-subnet" : "bob-firewall-rule";
    Files.writeString(dir.resolve("item.auto.tfvars"), "item = \"" + item + "\"\n");
    if (!name.equals("setup")) {
      terraform(dir, "init");
    }
    return dir;
  }

  private static String backendBlock(String url, String wait) {
    return """
        terraform {
          backend "http" {
            address        = "%s"
            lock_address   = "%s/lock?wait=%s"
            unlock_address = "%s/lock"
          }
        }
        """
        .formatted(url, url, wait, url);
  }

  /** Each engineer's change goes on top of what the state already holds, like a real change. */
  private static String accumulating(String url) {
    return """
        variable "item" {}
        data "terraform_remote_state" "current" {
          backend = "http"
          config = {
            address = "%s"
          }
        }
        locals {
          items = sort(distinct(concat(try(data.terraform_remote_state.current.outputs.items, []), [var.item])))
        }
        resource "terraform_data" "item" {
          for_each = toset(local.items)
          input    = each.key
          # Creating takes a moment, as real infrastructure does: the runs overlap.
          provisioner "local-exec" {
            command = "sleep 1"
          }
        }
        output "items" {
          value = local.items
        }
        """
        .formatted(url);
  }

  private void terraform(Path dir, String... args) throws Exception {
    Process p = start(dir, List.of(args));
    String output = drain(p);
    if (!p.waitFor(3, TimeUnit.MINUTES) || p.exitValue() != 0) {
      throw new IllegalStateException(
          "terraform " + String.join(" ", args) + " failed:\n" + output);
    }
  }

  private Process start(Path dir, List<String> args) throws IOException {
    List<String> command = new ArrayList<>();
    command.add(terraform);
    command.addAll(args);
    ProcessBuilder pb =
        new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true);
    pb.environment().put("TF_IN_AUTOMATION", "1");
    pb.environment().put("TF_INPUT", "0");
    pb.environment().put("CHECKPOINT_DISABLE", "1");
    pb.environment().put("TF_CLI_ARGS", "-no-color");
    pb.environment().put("TF_HTTP_USERNAME", dir.getFileName().toString());
    pb.environment().put("TF_HTTP_PASSWORD", "not-checked-in-embedded-mode");
    return pb.start();
  }

  private static String drain(Process p) {
    try {
      return new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    } catch (IOException e) {
      return "";
    }
  }

  /** The first line of {@code terraform version} ("Terraform v1.11.4"), when terraform runs. */
  private Optional<String> terraformVersion() {
    try {
      Process p =
          new ProcessBuilder(terraform, "version")
              .redirectError(ProcessBuilder.Redirect.DISCARD)
              .start();
      String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      if (!p.waitFor(30, TimeUnit.SECONDS) || p.exitValue() != 0) {
        return Optional.empty();
      }
      return Optional.of(
          output
              .lines()
              .map(String::trim)
              .filter(l -> l.startsWith("Terraform v") || l.startsWith("OpenTofu v"))
              .findFirst()
              .orElse("version unknown"));
    } catch (IOException e) {
      return Optional.empty();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return Optional.empty();
    }
  }

  private void printState(String url, String when) throws Exception {
    JsonNode state = new ObjectMapper().readTree(get(url));
    TreeSet<String> items = new TreeSet<>();
    state.path("outputs").path("items").path("value").forEach(v -> items.add(v.asText()));
    out.println(
        "  State "
            + when
            + ": serial "
            + state.path("serial").asLong()
            + ", changes kept: "
            + items);
  }

  // ---- without terraform: the requests terraform sends ----

  private void withRequests(String url) throws Exception {
    HttpClient http = HttpClient.newHttpClient();
    String lineage = UUID.randomUUID().toString();
    start = System.nanoTime();
    out.println("Setup: an empty state is written (serial 1).");
    send(http, "POST", url, "setup", stateJson(1, lineage, List.of()));
    out.println();
    out.println(
        "Round 1: alice and bob lock at the same moment; bob's LOCK carries ?wait=25s and waits");
    out.println("in line on the server.");
    start = System.nanoTime();
    LockInfo aliceLock = lock("alice");
    LockInfo bobLock = lock("bob");
    send(http, "LOCK", url + "/lock", "alice", aliceLock.toJson());
    CompletableFuture<HttpResponse<String>> bobWaits =
        CompletableFuture.supplyAsync(
            () -> sendQuietly(http, "LOCK", url + "/lock?wait=" + WAIT, "bob", bobLock.toJson()));
    Thread.sleep(300);
    send(
        http,
        "POST",
        url + "?ID=" + aliceLock.id(),
        "alice",
        stateJson(2, lineage, List.of("alice-subnet")));
    send(http, "UNLOCK", url + "/lock", "alice", aliceLock.toJson());
    bobWaits.get();
    // bob reads the state after getting the lock, so his change goes on top of alice's.
    send(
        http,
        "POST",
        url + "?ID=" + bobLock.id(),
        "bob",
        stateJson(3, lineage, List.of("alice-subnet", "bob-firewall-rule")));
    send(http, "UNLOCK", url + "/lock", "bob", bobLock.toJson());
    printState(url, "after round 1");
    out.println();
    out.println(
        "Round 2: both skip the lock (-lock=false), both read serial 3 and write serial 4.");
    start = System.nanoTime();
    send(
        http,
        "POST",
        url,
        "alice",
        stateJson(4, lineage, List.of("alice-dns-record", "alice-subnet", "bob-firewall-rule")));
    HttpResponse<String> refused =
        send(
            http,
            "POST",
            url,
            "bob",
            stateJson(
                4, lineage, List.of("alice-subnet", "bob-firewall-rule", "bob-load-balancer")));
    out.println(
        "  bob's write got HTTP "
            + refused.statusCode()
            + ": terraform reports the failure instead of losing alice's change.");
    printState(url, "after round 2");
  }

  private static LockInfo lock(String who) {
    return new LockInfo(
        UUID.randomUUID().toString(),
        "OperationTypeApply",
        "",
        who + "@laptop",
        "1.11.4",
        java.time.Instant.now().toString(),
        "");
  }

  private static String stateJson(long serial, String lineage, List<String> items) {
    StringBuilder instances = new StringBuilder();
    StringBuilder values = new StringBuilder();
    for (String item : items) {
      if (instances.length() > 0) {
        instances.append(',');
        values.append(',');
      }
      instances
          .append("{\"index_key\":\"")
          .append(item)
          .append("\",\"schema_version\":0,\"attributes\":{\"id\":\"")
          .append(item)
          .append("\"}}");
      values.append('"').append(item).append('"');
    }
    return "{\"version\":4,\"terraform_version\":\"1.11.4\",\"serial\":"
        + serial
        + ",\"lineage\":\""
        + lineage
        + "\",\"outputs\":{\"items\":{\"value\":["
        + values
        + "],\"type\":[\"list\",\"string\"]}},"
        + "\"resources\":[{\"mode\":\"managed\",\"type\":\"terraform_data\",\"name\":\"item\",\"provider\":\"provider[\\\"terraform.io/builtin/terraform\\\"]\",\"instances\":["
        + instances
        + "]}],\"check_results\":null}";
  }

  private static HttpResponse<String> send(
      HttpClient http, String method, String url, String user, String body) throws Exception {
    HttpRequest.Builder b =
        HttpRequest.newBuilder(URI.create(url))
            .method(
                method,
                body == null
                    ? HttpRequest.BodyPublishers.noBody()
                    : HttpRequest.BodyPublishers.ofString(body))
            .header(
                "Authorization",
                "Basic "
                    + Base64.getEncoder()
                        .encodeToString((user + ":x").getBytes(StandardCharsets.UTF_8)));
    return http.send(b.build(), HttpResponse.BodyHandlers.ofString());
  }

  private static HttpResponse<String> sendQuietly(
      HttpClient http, String method, String url, String user, String body) {
    try {
      return send(http, method, url, user, body);
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }

  private static String get(String url) throws Exception {
    return HttpClient.newHttpClient()
        .send(HttpRequest.newBuilder(URI.create(url)).build(), HttpResponse.BodyHandlers.ofString())
        .body();
  }

  private static void deleteTree(Path root) throws IOException {
    try (var paths = Files.walk(root)) {
      paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }
}
