package io.leasehold.state;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class StateNamesTest {

  @Test
  @DisplayName("Names follow Terraform's kubernetes backend for secret_suffix and workspace")
  void namesMatchTerraform() {
    StateNames names = new StateNames("ns", "network", "prod");
    assertThat(names.secretName()).isEqualTo("tfstate-prod-network");
    assertThat(names.chunkSecretName(2)).isEqualTo("tfstate-prod-network-part-2");
    assertThat(names.leaseName()).isEqualTo("lock-tfstate-prod-network");
    assertThat(names.terraformLabels())
        .containsEntry("tfstate", "true")
        .containsEntry("tfstateSecretSuffix", "network")
        .containsEntry("tfstateWorkspace", "prod")
        .containsEntry("app.kubernetes.io/managed-by", "terraform");
  }

  @ParameterizedTest(name = "{0} has chunk index {1}")
  @CsvSource({
    "tfstate-prod-network, 0",
    "tfstate-prod-network-part-1, 1",
    "tfstate-prod-network-part-12, 12",
    "tfstate-prod-network-part-, -1",
    "tfstate-prod-network-part-x, -1",
    "tfstate-prod-network-extra, -1",
    "tfstate-staging-network, -1",
  })
  void chunkIndex(String secret, int index) {
    assertThat(new StateNames("ns", "network", "prod").chunkIndex(secret)).isEqualTo(index);
  }

  @ParameterizedTest(name = "name {0}, workspace {1}: {2}")
  @CsvSource({
    "app-2, default, ends in '-<digits>'",
    "42, default, ends in '-<digits>'",
    "app, Prod, is not a DNS label",
    "app, a_b, is not a DNS label",
    "a-very-long-name-that-goes-on-and-on-past-the-label-limit-of-63-chars, default, longer than 63",
  })
  void problems(String name, String workspace, String expected) {
    assertThat(new StateNames("ns", name, workspace).problem()).get().asString().contains(expected);
  }

  @Test
  void validNamesHaveNoProblem() {
    assertThat(new StateNames("ns", "app-v2", "default").problem()).isEmpty();
    assertThat(new StateNames("ns", "net.prod", "eu-west-1a").problem()).isEmpty();
  }
}
