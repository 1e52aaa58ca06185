package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.client.dsl.base.CustomResourceDefinitionContext;
import io.fabric8.kubernetes.client.server.mock.CustomResourceAware;
import io.fabric8.kubernetes.client.server.mock.KubernetesCrudDispatcher;
import io.fabric8.mockwebserver.ServerRequest;
import io.fabric8.mockwebserver.ServerResponse;
import io.fabric8.mockwebserver.crud.AttributeSet;
import io.fabric8.mockwebserver.dsl.HttpMethod;
import io.fabric8.mockwebserver.http.Dispatcher;
import io.fabric8.mockwebserver.http.MockResponse;
import io.fabric8.mockwebserver.http.RecordedRequest;
import io.fabric8.mockwebserver.internal.MockDispatcher;
import io.fabric8.mockwebserver.internal.SimpleRequest;
import java.io.IOException;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Queue;
import java.util.Set;

/**
 * The in-memory store: the mock server's expectations first (tests add some), then its CRUD
 * dispatcher, which stores objects as an API server would but for what {@link
 * Normalizing#processEvent} puts right: objects of kinds that have no {@code metadata.generation}
 * in the API (ConfigMaps, Secrets, Leases ...) are stored without one, and a {@code "status": null}
 * the store writes for objects without a status is left out.
 */
final class Store extends Dispatcher implements CustomResourceAware {

  /** Built-in kinds whose objects carry no generation. */
  static final Set<String> NO_GENERATION =
      Set.of(
          "ConfigMap",
          "Secret",
          "ServiceAccount",
          "Service",
          "Event",
          "Lease",
          "Namespace",
          "Role",
          "RoleBinding",
          "ClusterRole",
          "ClusterRoleBinding");

  private final Map<ServerRequest, Queue<ServerResponse>> responses;
  private final MockDispatcher expectations;
  private final KubernetesCrudDispatcher crud;

  Store(Map<ServerRequest, Queue<ServerResponse>> responses, ObjectMapper mapper) {
    this.responses = responses;
    this.expectations = new MockDispatcher(responses);
    this.crud = new Normalizing(mapper);
  }

  @Override
  public MockResponse dispatch(RecordedRequest request) {
    return expected(request).orElseGet(() -> crud.dispatch(request));
  }

  /** The answer a test's expectation gives {@code request}, if one does. */
  Optional<MockResponse> expected(RecordedRequest request) {
    Queue<ServerResponse> queue =
        responses.get(
            new SimpleRequest(HttpMethod.valueOf(request.getMethod()), request.getPath()));
    if (queue != null && !queue.isEmpty()) {
      return Optional.of(expectations.dispatch(request));
    }
    return Optional.empty();
  }

  @Override
  public void expectCustomResource(CustomResourceDefinitionContext rdc) {
    crud.expectCustomResource(rdc);
  }

  @Override
  public void shutdown() {
    crud.shutdown();
    expectations.shutdown();
  }

  private static final class Normalizing extends KubernetesCrudDispatcher {
    private final ObjectMapper mapper;

    Normalizing(ObjectMapper mapper) {
      super(List.of());
      this.mapper = mapper;
    }

    /** The store copies the stored generation over; an object without one is given one here. */
    @Override
    public void preserveMetadata(JsonNode current, JsonNode updated) {
      if (current.get("metadata") instanceof ObjectNode metadata && !metadata.has("generation")) {
        JsonNode withGeneration = current.deepCopy();
        ((ObjectNode) withGeneration.get("metadata")).put("generation", 1);
        super.preserveMetadata(withGeneration, updated);
        return;
      }
      super.preserveMetadata(current, updated);
    }

    /** Objects without a generation keep none; the others' is raised as the store raises it. */
    @Override
    public void touchGeneration(JsonNode current, JsonNode updated) {
      if (NO_GENERATION.contains(updated.path("kind").asText())
          || current == null
          || !current.path("metadata").has("generation")) {
        if (updated.get("metadata") instanceof ObjectNode metadata
            && NO_GENERATION.contains(updated.path("kind").asText())) {
          metadata.remove("generation");
        }
        return;
      }
      super.touchGeneration(current, updated);
    }

    @Override
    public void processEvent(
        String path,
        AttributeSet pathAttributes,
        AttributeSet oldAttributes,
        GenericKubernetesResource resource,
        String newState) {
      super.processEvent(path, pathAttributes, oldAttributes, resource, normalize(newState));
    }

    private String normalize(String json) {
      if (json == null || !(json.contains("\"generation\"") || json.contains("\"status\":null"))) {
        return json;
      }
      try {
        JsonNode node = mapper.readTree(json);
        if (!(node instanceof ObjectNode object)) {
          return json;
        }
        boolean changed = false;
        if (object.has("status") && object.get("status").isNull()) {
          object.remove("status");
          changed = true;
        }
        if (NO_GENERATION.contains(object.path("kind").asText())
            && object.get("metadata") instanceof ObjectNode metadata
            && metadata.has("generation")) {
          metadata.remove("generation");
          changed = true;
        }
        return changed ? mapper.writeValueAsString(object) : json;
      } catch (IOException e) {
        return json;
      }
    }
  }
}
