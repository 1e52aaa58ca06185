package io.leasehold.support;

import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.leasehold.backend.Access;
import io.leasehold.backend.HttpBackend;
import io.leasehold.backend.JobPods;
import io.leasehold.cli.Replica;
import io.leasehold.operator.LeaseholdOperator;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Optional;
import java.util.Set;

/**
 * The operator and its HTTP backend (no authentication) in a process of their own, against the API
 * of a kubeconfig: so that a measurement of this JVM is the operator's alone.
 *
 * <p>Usage: {@code OperatorProcess KUBECONFIG [MAX_STATE_BYTES]}. Prints {@code terraform-backend:
 * URL} once serving. Reads commands on stdin: {@code gc} runs the garbage collector twice and
 * prints {@code heap-after-gc: BYTES}. Exits when stdin closes.
 */
public final class OperatorProcess {

  public static final String BACKEND_LINE = "terraform-backend: ";
  public static final String HEAP_LINE = "heap-after-gc: ";

  private OperatorProcess() {}

  public static void main(String[] args) throws Exception {
    if (args.length < 1) {
      System.err.println("usage: OperatorProcess KUBECONFIG [MAX_STATE_BYTES]");
      System.exit(2);
    }
    String kubeconfig = Files.readString(Path.of(args[0]), StandardCharsets.UTF_8);
    long maxStateBytes = args.length > 1 ? Long.parseLong(args[1]) : 512L * 1024 * 1024;
    Config config = Config.fromKubeconfig(kubeconfig);
    config.setRequestTimeout(120_000);
    try (KubernetesClient client = new KubernetesClientBuilder().withConfig(config).build();
        Replica backend =
            Replica.start(
                client,
                new LeaseholdOperator.Options(Set.of(), Optional.empty(), "operator-process"),
                new Replica.Backend(
                    Access.NONE,
                    JobPods.NONE,
                    new HttpBackend.Config("127.0.0.1", 0, Duration.ofMinutes(10)),
                    maxStateBytes))) {
      System.out.println(BACKEND_LINE + backend.url());
      System.out.flush();
      BufferedReader in =
          new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
      for (String line = in.readLine(); line != null; line = in.readLine()) {
        if (line.trim().equals("gc")) {
          System.gc();
          System.gc();
          Runtime rt = Runtime.getRuntime();
          System.out.println(HEAP_LINE + (rt.totalMemory() - rt.freeMemory()));
          System.out.flush();
        }
      }
    }
    // Non-daemon threads of the client or Vert.x must not keep a parent waiting.
    System.exit(0);
  }
}
