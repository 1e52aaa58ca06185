package io.leasehold.examples;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.PodSpec;
import io.fabric8.kubernetes.api.model.ServiceAccount;
import io.fabric8.kubernetes.api.model.ServiceAccountTokenProjection;
import io.fabric8.kubernetes.api.model.Volume;
import io.fabric8.kubernetes.api.model.batch.v1.CronJob;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.batch.v1.JobSpec;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * The runner examples send leasehold a token that is useless against the API server: a projected
 * ServiceAccount token for the audience leasehold, short-lived, with no API-server token mounted,
 * over HTTPS verified against the CA leasehold publishes.
 */
class RunnerTokenExamplesTest {

  private static final Path EXAMPLES =
      Path.of(System.getProperty("leasehold.projectRoot"), "examples");

  private static List<HasMetadata> load(String file) throws Exception {
    try (InputStream in = Files.newInputStream(EXAMPLES.resolve(file))) {
      Object parsed = Serialization.unmarshal(in);
      List<HasMetadata> all = new ArrayList<>();
      if (parsed instanceof List<?> list) {
        list.forEach(o -> all.add((HasMetadata) o));
      } else {
        all.add((HasMetadata) parsed);
      }
      return all;
    }
  }

  private static void assertAudienceBound(JobSpec job, String what) {
    PodSpec pod = job.getTemplate().getSpec();
    assertThat(pod.getAutomountServiceAccountToken())
        .as("%s mounts no API-server token", what)
        .isFalse();
    ServiceAccountTokenProjection token =
        pod.getVolumes().stream()
            .filter(v -> v.getProjected() != null)
            .flatMap(v -> v.getProjected().getSources().stream())
            .map(s -> s.getServiceAccountToken())
            .filter(t -> t != null)
            .findFirst()
            .orElseThrow(() -> new AssertionError(what + " has no projected ServiceAccount token"));
    assertThat(token.getAudience()).isEqualTo("leasehold");
    assertThat(token.getExpirationSeconds()).isBetween(600L, 3600L);
    assertThat(job.getActiveDeadlineSeconds())
        .as("%s ends before its token expires (Terraform reads the password once)", what)
        .isLessThan(token.getExpirationSeconds());
    String script = String.join(" ", pod.getContainers().get(0).getArgs());
    assertThat(script)
        .contains("TF_HTTP_PASSWORD=\"$(cat /var/run/secrets/leasehold/token)\"")
        .contains("TF_HTTP_CLIENT_CA_CERTIFICATE_PEM=\"$(cat /etc/leasehold-ca/ca.crt)\"")
        .doesNotContain("kubernetes.io/serviceaccount/token");
    assertThat(pod.getVolumes())
        .extracting(Volume::getConfigMap)
        .anySatisfy(c -> assertThat(c).hasFieldOrPropertyWithValue("name", "leasehold-ca"));
  }

  @Test
  @DisplayName(
      "The quick-start runner Job authenticates with a projected token for audience leasehold,"
          + " mounts no API-server token, and talks HTTPS verified against the published CA")
  void quickstartRunner() throws Exception {
    List<HasMetadata> docs = load("quickstart/runner-job.yaml");
    Job job =
        docs.stream().filter(Job.class::isInstance).map(Job.class::cast).findFirst().orElseThrow();
    assertAudienceBound(job.getSpec(), "the quick-start Job");
    ConfigMap code =
        load("quickstart/runner-config.yaml").stream()
            .filter(ConfigMap.class::isInstance)
            .map(ConfigMap.class::cast)
            .findFirst()
            .orElseThrow();
    assertThat(code.getData().get("main.tf"))
        .contains("address        = \"https://")
        .doesNotContain("http://");
    ServiceAccount account =
        load("quickstart/runner-rbac.yaml").stream()
            .filter(ServiceAccount.class::isInstance)
            .map(ServiceAccount.class::cast)
            .findFirst()
            .orElseThrow();
    assertThat(account.getAutomountServiceAccountToken()).isFalse();
  }

  @Test
  @DisplayName("The GitOps CronJob's runners do the same")
  void gitopsRunner() throws Exception {
    CronJob cron = (CronJob) load("gitops/cronjob.yaml").get(0);
    assertAudienceBound(cron.getSpec().getJobTemplate().getSpec(), "the GitOps CronJob");
    assertThat(Files.readString(EXAMPLES.resolve("gitops/main.tf")))
        .contains("https://leasehold.leasehold-system.svc:8080")
        .doesNotContain("http://");
  }
}
