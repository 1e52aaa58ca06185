package io.leasehold.cli;

import io.fabric8.kubernetes.client.KubernetesClient;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Optional;
import picocli.CommandLine;

/**
 * What only the local jar ({@code operator/target/leasehold.jar}) can do: start an embedded
 * Kubernetes API ({@code run --embedded}) and play the demo. Its implementation ({@value
 * #IMPLEMENTATION}), the embedded API and the mock server that API is built on are left out of the
 * server jar that the container image runs; there {@link #find()} finds nothing, and those commands
 * say so and exit with {@link #REFUSED}. The command line names the implementation only as a
 * string, so nothing in the server jar's code paths refers to a class it lacks.
 */
public interface LocalBuild {

  /** The implementation, present in the local jar only. */
  String IMPLEMENTATION = "io.leasehold.local.Local";

  /** The exit status of a command the server jar cannot run (picocli's usage error). */
  int REFUSED = 2;

  /** How to get the local jar. */
  String HOW_TO_GET =
      "to get the local jar, run 'mvn -B -DskipTests package' in a checkout of leasehold; it"
          + " writes operator/target/leasehold.jar";

  /** An embedded Kubernetes API on 127.0.0.1, with leasehold's CRD and admission policies. */
  interface Api extends AutoCloseable {

    /** The API's base URL, for example {@code http://127.0.0.1:35211}. */
    String url();

    /** The namespace that objects without one go to. */
    String namespace();

    /** A client acting as the operator; the caller closes it. */
    KubernetesClient newClient();

    /** Creates or replaces every object of a (multi-document) manifest file. */
    void apply(Path manifest);

    /** Writes a kubeconfig for this API, for kubectl and Terraform's kubernetes backend. */
    void writeKubeconfig(Path file);

    @Override
    void close();
  }

  /** Starts an embedded API on 127.0.0.1 at {@code port} (0: a free port). */
  Api startApi(int port);

  /** Plays the two-engineers demo; returns the exit status. */
  int demo(PrintWriter out, String terraform) throws Exception;

  /** The local build's implementation, or empty in the server jar. */
  static Optional<LocalBuild> find() {
    Class<?> type;
    try {
      type = Class.forName(IMPLEMENTATION, true, LocalBuild.class.getClassLoader());
    } catch (ClassNotFoundException serverJar) {
      return Optional.empty();
    }
    try {
      return Optional.of((LocalBuild) type.getDeclaredConstructor().newInstance());
    } catch (ReflectiveOperationException | ClassCastException e) {
      throw new IllegalStateException("cannot create " + IMPLEMENTATION + ": " + e, e);
    }
  }

  /**
   * Tells the user that {@code what} needs the local jar, on the command's error stream, without a
   * stack trace; returns {@link #REFUSED} for the command to exit with.
   */
  static int refuse(CommandLine command, String what) {
    PrintWriter err = command.getErr();
    err.println(
        "error: "
            + what
            + " needs the local jar of leasehold. This is the server jar (leasehold-server.jar,"
            + " the one in the container image), which leaves out the embedded Kubernetes API"
            + " and the demo; "
            + HOW_TO_GET
            + ".");
    err.flush();
    return REFUSED;
  }
}
