package io.leasehold.api;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.client.utils.KubernetesSerialization;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class TerraformStateJsonTest {

  private static final KubernetesSerialization JSON = new KubernetesSerialization();

  @Test
  @DisplayName(
      "A TerraformState read without spec has none, so it is never taken for workspace default;"
          + " one read with a spec keeps it, and a new one starts with the defaults")
  void missingSpecIsNotDefaulted() {
    TerraformState none =
        JSON.unmarshal(
            "{\"apiVersion\":\"leasehold.io/v1alpha1\",\"kind\":\"TerraformState\","
                + "\"metadata\":{\"name\":\"x\",\"namespace\":\"ns\"},"
                + "\"status\":{\"holder\":\"h\"}}",
            TerraformState.class);
    assertThat(none.getSpec()).isNull();
    assertThat(none.getMetadata().getName()).isEqualTo("x");
    assertThat(none.getStatus().getHolder()).isEqualTo("h");

    TerraformState nulled =
        JSON.unmarshal(
            "{\"apiVersion\":\"leasehold.io/v1alpha1\",\"kind\":\"TerraformState\","
                + "\"metadata\":{\"name\":\"x\"},\"spec\":null}",
            TerraformState.class);
    assertThat(nulled.getSpec()).isNull();

    TerraformState given =
        JSON.unmarshal(
            "{\"apiVersion\":\"leasehold.io/v1alpha1\",\"kind\":\"TerraformState\","
                + "\"metadata\":{\"name\":\"x\"},\"spec\":{\"workspace\":\"prod\"}}",
            TerraformState.class);
    assertThat(given.getSpec().getWorkspace()).isEqualTo("prod");
    assertThat(JSON.clone(given).getSpec().getWorkspace()).isEqualTo("prod");
    assertThat(JSON.clone(none).getSpec()).isNull();

    assertThat(new TerraformState().getSpec().getWorkspace()).isEqualTo("default");
  }
}
