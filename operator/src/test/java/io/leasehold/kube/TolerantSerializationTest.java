package io.leasehold.kube;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.batch.v1.JobList;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.api.model.coordination.v1.LeaseBuilder;
import io.fabric8.kubernetes.client.utils.KubernetesSerialization;
import io.leasehold.api.TerraformState;
import java.util.List;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class TolerantSerializationTest {

  private static final TolerantSerialization JSON = new TolerantSerialization();
  private static final ObjectMapper TREE = new ObjectMapper();

  /** A value no message may ever show. */
  private static final String SECRET = "do-not-show-this-value";

  private static final String HEAD =
      "{\"apiVersion\":\"leasehold.io/v1alpha1\",\"kind\":\"TerraformState\","
          + "\"metadata\":{\"name\":\"net\",\"namespace\":\"infra\",\"resourceVersion\":\"7\"}";

  @Test
  @DisplayName(
      "A TerraformState with fields this version does not know (at the top, in spec, in a nested"
          + " spec object and in status) is read as usual and written back with every one of them,"
          + " whether read by leasehold's serialization or Fabric8's own")
  void unknownFieldsAreReadAndKept() throws Exception {
    String json =
        HEAD
            + ",\"extra\":{\"a\":1},"
            + "\"spec\":{\"workspace\":\"prod\",\"foo\":1,"
            + "\"lock\":{\"leaseDurationSeconds\":60,\"bar\":[1,2]},"
            + "\"history\":{\"keep\":3,\"since\":\"v2\"}},"
            + "\"status\":{\"holder\":\"h\",\"future\":{\"x\":true},"
            + "\"lock\":{\"id\":\"i\",\"more\":1},\"state\":{\"serial\":4,\"newer\":\"y\"}}}";
    for (KubernetesSerialization reader : List.of(JSON, new KubernetesSerialization())) {
      TerraformState state = reader.unmarshal(json, TerraformState.class);

      assertThat(state.getSpec().getWorkspace()).isEqualTo("prod");
      assertThat(state.getSpec().getLock().getLeaseDurationSeconds()).isEqualTo(60);
      assertThat(state.getSpec().getHistory().getKeep()).isEqualTo(3);
      assertThat(state.getStatus().getHolder()).isEqualTo("h");
      assertThat(TolerantSerialization.unreadable(state)).isEmpty();

      JsonNode written = TREE.readTree(reader.asJson(reader.clone(state)));
      assertThat(written.at("/extra/a").asInt()).isEqualTo(1);
      assertThat(written.at("/spec/foo").asInt()).isEqualTo(1);
      assertThat(written.at("/spec/lock/bar/1").asInt()).isEqualTo(2);
      assertThat(written.at("/spec/history/since").asText()).isEqualTo("v2");
      assertThat(written.at("/status/future/x").asBoolean()).isTrue();
      assertThat(written.at("/status/lock/more").asInt()).isEqualTo(1);
      assertThat(written.at("/status/state/newer").asText()).isEqualTo("y");
    }
  }

  @Test
  @DisplayName(
      "A TerraformState with a value of the wrong type in spec or status, at any depth, is read"
          + " without that part, which is written back exactly as it was; the field is told by its"
          + " path and type, never by its value")
  void wrongTypesAreKeptAndNamed() throws Exception {
    record Case(String json, String field, String says) {}
    List<Case> cases =
        List.of(
            new Case(
                HEAD + ",\"spec\":{\"lock\":{\"leaseDurationSeconds\":\"" + SECRET + "\"}}}",
                "spec",
                "spec.lock.leaseDurationSeconds cannot be read: it should be an integer"),
            new Case(
                HEAD + ",\"spec\":{\"history\":{\"keep\":{\"v\":\"" + SECRET + "\"}}}}",
                "spec",
                "spec.history.keep cannot be read: it should be an integer"),
            new Case(
                HEAD + ",\"spec\":{\"deletionPolicy\":\"" + SECRET + "\"}}",
                "spec",
                "spec.deletionPolicy cannot be read: it should be one of Retain, Delete"),
            new Case(
                HEAD + ",\"spec\":\"" + SECRET + "\"}",
                "spec",
                "spec cannot be read: it should be an object"),
            new Case(
                HEAD + ",\"spec\":{},\"status\":\"" + SECRET + "\"}",
                "status",
                "status cannot be read: it should be an object"),
            new Case(
                HEAD
                    + ",\"spec\":{},\"status\":{\"queue\":[{\"position\":1},"
                    + "{\"position\":[\""
                    + SECRET
                    + "\"]}]}}",
                "status",
                "status.queue[1].position cannot be read: it should be an integer"));
    for (Case c : cases) {
      TerraformState state = JSON.unmarshal(c.json(), TerraformState.class);

      assertThat(state.getMetadata().getName()).isEqualTo("net");
      if (c.field().equals("spec")) {
        assertThat(state.getSpec()).isNull();
      } else {
        assertThat(state.getStatus()).isNull();
        assertThat(state.getSpec()).isNotNull();
      }
      var unreadable = TolerantSerialization.unreadable(state).orElseThrow();
      assertThat(unreadable.says()).isEqualTo(c.says()).doesNotContain(SECRET);
      JsonNode original = TREE.readTree(c.json()).get(c.field());
      assertThat(TREE.readTree(JSON.asJson(state)).get(c.field())).isEqualTo(original);
      // Read again (as the Java Operator SDK clones what it caches), it is the same.
      TerraformState again = JSON.clone(state);
      assertThat(TolerantSerialization.unreadable(again).orElseThrow()).isEqualTo(unreadable);
    }
  }

  @Test
  @DisplayName(
      "An object whose metadata holds a value of the wrong type keeps its name and version and is"
          + " read without that metadata field, which is written back as it was")
  void wrongTypesInMetadataAreKeptAndNamed() throws Exception {
    String json =
        "{\"apiVersion\":\"leasehold.io/v1alpha1\",\"kind\":\"TerraformState\","
            + "\"metadata\":{\"name\":\"net\",\"resourceVersion\":\"7\","
            + "\"labels\":{\"team\":{\"v\":\""
            + SECRET
            + "\"}}},\"spec\":{}}";
    TerraformState state = JSON.unmarshal(json, TerraformState.class);

    assertThat(state.getMetadata().getName()).isEqualTo("net");
    assertThat(state.getMetadata().getResourceVersion()).isEqualTo("7");
    assertThat(state.getSpec()).isNotNull();
    assertThat(TolerantSerialization.unreadable(state).orElseThrow().says())
        .isEqualTo("metadata.labels.team cannot be read: it should be a string");
    assertThat(TREE.readTree(JSON.asJson(state)).get("metadata"))
        .isEqualTo(TREE.readTree(json).get("metadata"));
  }

  @Test
  @DisplayName(
      "A runner Job or a lock Lease with a value of the wrong type is read, alone and in a list,"
          + " its other parts as usual, and written back unchanged")
  void jobsAndLeasesWithWrongTypesAreRead() throws Exception {
    String badJob =
        "{\"apiVersion\":\"batch/v1\",\"kind\":\"Job\",\"metadata\":{\"name\":\"bad\","
            + "\"labels\":{\"leasehold.io/state\":\"net\"}},"
            + "\"spec\":{\"suspend\":true,\"parallelism\":\""
            + SECRET
            + "\"},\"status\":{\"active\":1}}";
    Job job = JSON.unmarshal(badJob, Job.class);
    assertThat(job.getSpec()).isNull();
    assertThat(job.getStatus().getActive()).isEqualTo(1);
    assertThat(job.getMetadata().getLabels()).containsEntry("leasehold.io/state", "net");
    assertThat(TolerantSerialization.unreadable(job).orElseThrow().says())
        .isEqualTo("spec.parallelism cannot be read: it should be an integer");
    assertThat(TREE.readTree(JSON.asJson(job))).isEqualTo(TREE.readTree(badJob));

    JobList list =
        JSON.unmarshal(
            "{\"apiVersion\":\"batch/v1\",\"kind\":\"JobList\",\"items\":["
                + badJob
                + ",{\"apiVersion\":\"batch/v1\",\"kind\":\"Job\",\"metadata\":{\"name\":\"ok\"},"
                + "\"spec\":{\"suspend\":true}}]}",
            JobList.class);
    assertThat(list.getItems()).hasSize(2);
    assertThat(list.getItems().get(1).getSpec().getSuspend()).isTrue();
    assertThat(TolerantSerialization.unreadable(list.getItems().get(1))).isEmpty();

    String badLease =
        "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\","
            + "\"metadata\":{\"name\":\"lock-tfstate-default-net\",\"resourceVersion\":\"3\"},"
            + "\"spec\":{\"holderIdentity\":\"job/a/1\",\"leaseDurationSeconds\":{\"s\":\""
            + SECRET
            + "\"}}}";
    Lease lease = JSON.unmarshal(badLease, Lease.class);
    assertThat(TolerantSerialization.unreadable(lease).orElseThrow().says())
        .isEqualTo("spec.leaseDurationSeconds cannot be read: it should be an integer");
    // Changing what can be read (as a Lease update does) leaves the rest as it was.
    Lease annotated =
        new LeaseBuilder(lease).editMetadata().addToAnnotations("a", "b").endMetadata().build();
    JsonNode written = TREE.readTree(JSON.asJson(annotated));
    assertThat(written.get("spec")).isEqualTo(TREE.readTree(badLease).get("spec"));
    assertThat(written.at("/metadata/annotations/a").asText()).isEqualTo("b");
  }
}
