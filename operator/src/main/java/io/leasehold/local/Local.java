package io.leasehold.local;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.cli.LocalBuild;
import io.leasehold.embedded.EmbeddedKubernetes;
import java.io.PrintWriter;
import java.nio.file.Path;

/**
 * The local jar's {@link LocalBuild}: the embedded Kubernetes API and the demo. The command line
 * finds this class by its name; the server jar leaves this package out, and with it every use of
 * {@code io.leasehold.embedded}.
 */
public final class Local implements LocalBuild {

  public Local() {}

  /** Starts the embedded API with leasehold's CRD and the chart's admission policies. */
  @Override
  public Api startApi(int port) {
    EmbeddedKubernetes api = EmbeddedKubernetes.start(port);
    try {
      api.installAdmissionPolicies();
    } catch (RuntimeException e) {
      api.close();
      throw e;
    }
    return new Embedded(api);
  }

  @Override
  public int demo(PrintWriter out, String terraform) throws Exception {
    return new TwoEngineersDemo(out, terraform).run();
  }

  private record Embedded(EmbeddedKubernetes api) implements Api {

    @Override
    public String url() {
      return api.url();
    }

    @Override
    public String namespace() {
      return EmbeddedKubernetes.DEFAULT_NAMESPACE;
    }

    @Override
    public KubernetesClient newClient() {
      return api.newClient();
    }

    @Override
    public void apply(Path manifest) {
      api.apply(manifest);
    }

    @Override
    public void writeKubeconfig(Path file) {
      api.writeKubeconfig(file);
    }

    @Override
    public void close() {
      api.close();
    }
  }
}
