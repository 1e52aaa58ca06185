package io.leasehold.kube;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.SecretBuilder;
import java.util.Map;
import org.junit.jupiter.api.Test;

class MetadataOnlySecretsTest {

  @Test
  void keepsMetadataAndKeyNamesButNoData() {
    Secret state =
        new SecretBuilder()
            .withNewMetadata()
            .withName("tfstate-default-big")
            .withNamespace("default")
            .withResourceVersion("42")
            .withLabels(Map.of("tfstate", "true"))
            .endMetadata()
            .withData(Map.of("tfstate", "H4sIAAAAAAAA/6tWKkktLlGyUlAqS8wpTVWqBQA=".repeat(1000)))
            .build();
    MetadataOnlySecrets store = new MetadataOnlySecrets();

    store.put(store.getKey(state), state);

    Secret kept = store.get("default/tfstate-default-big");
    assertThat(kept.getMetadata().getResourceVersion()).isEqualTo("42");
    assertThat(kept.getMetadata().getLabels()).containsEntry("tfstate", "true");
    assertThat(kept.getData()).containsOnlyKeys("tfstate");
    assertThat(kept.getData().get("tfstate")).isEmpty();
    assertThat(state.getData().get("tfstate")).hasSize(40_000);
  }

  @Test
  void aSecretWithoutDataStaysWithoutData() {
    Secret empty =
        new SecretBuilder()
            .withNewMetadata()
            .withName("e")
            .withNamespace("ns")
            .endMetadata()
            .build();
    MetadataOnlySecrets store = new MetadataOnlySecrets();

    store.put(store.getKey(empty), empty);

    assertThat(store.get("ns/e").getData()).isNullOrEmpty();
    assertThat(store.size()).isEqualTo(1);
    assertThat(store.remove("ns/e")).isNotNull();
    assertThat(store.size()).isZero();
  }
}
