package io.leasehold.kube;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.api.model.ObjectMeta;
import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.SecretBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.http.HttpRequest;
import io.fabric8.kubernetes.client.http.HttpResponse;
import java.io.IOException;
import java.io.InputStream;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.stream.Collectors;

/**
 * Lists Secrets by label with their metadata only. The API server is asked for {@code
 * PartialObjectMetadataList}, so their data never travels; a server that sends whole Secrets all
 * the same has its answer read as a stream and their data skipped, never held. Either way listing
 * large Secrets (state history) costs no more memory than their names and annotations.
 */
public final class SecretMetadata {

  private static final String ACCEPT =
      "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
  private static final ObjectMapper MAPPER =
      new ObjectMapper().disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES);

  private SecretMetadata() {}

  /** Secrets of {@code namespace} carrying all of {@code labels}, without their data. */
  public static List<Secret> list(
      KubernetesClient client, String namespace, Map<String, String> labels) {
    String selector =
        new TreeMap<>(labels)
            .entrySet().stream()
                .map(e -> e.getKey() + "=" + e.getValue())
                .collect(Collectors.joining(","));
    String base = client.getMasterUrl().toString().replaceAll("/+$", "");
    String url =
        base
            + "/api/v1/namespaces/"
            + namespace
            + "/secrets?labelSelector="
            + URLEncoder.encode(selector, StandardCharsets.UTF_8);
    HttpRequest request =
        client.getHttpClient().newHttpRequestBuilder().uri(url).header("Accept", ACCEPT).build();
    long timeout = Math.max(10_000, client.getConfiguration().getRequestTimeout());
    HttpResponse<InputStream> response;
    try {
      response =
          client
              .getHttpClient()
              .sendAsync(request, InputStream.class)
              .get(timeout, TimeUnit.MILLISECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new KubernetesClientException("interrupted listing Secrets in " + namespace, e);
    } catch (ExecutionException | TimeoutException e) {
      throw new KubernetesClientException(
          "cannot list Secrets in " + namespace + ": " + e.getMessage(), e);
    }
    try (InputStream body = response.body()) {
      if (!response.isSuccessful()) {
        byte[] text = body == null ? new byte[0] : body.readNBytes(4096);
        throw new KubernetesClientException(
            "listing Secrets in "
                + namespace
                + " failed ("
                + response.code()
                + "): "
                + new String(text, StandardCharsets.UTF_8),
            response.code(),
            null);
      }
      return parse(body);
    } catch (IOException e) {
      throw new KubernetesClientException(
          "cannot read the list of Secrets in " + namespace + ": " + e.getMessage(), e);
    }
  }

  private static List<Secret> parse(InputStream body) throws IOException {
    List<Secret> secrets = new ArrayList<>();
    try (JsonParser parser = MAPPER.getFactory().createParser(body)) {
      if (parser.nextToken() != JsonToken.START_OBJECT) {
        throw new IOException("the answer is not a JSON object");
      }
      while (parser.nextToken() == JsonToken.FIELD_NAME) {
        String field = parser.currentName();
        JsonToken value = parser.nextToken();
        if (!"items".equals(field) || value != JsonToken.START_ARRAY) {
          parser.skipChildren();
          continue;
        }
        while (parser.nextToken() == JsonToken.START_OBJECT) {
          ObjectMeta metadata = null;
          while (parser.nextToken() == JsonToken.FIELD_NAME) {
            String itemField = parser.currentName();
            parser.nextToken();
            if ("metadata".equals(itemField)) {
              metadata = MAPPER.readValue(parser, ObjectMeta.class);
            } else {
              // data, stringData, type...: skipped as they stream past.
              parser.skipChildren();
            }
          }
          if (metadata != null) {
            secrets.add(new SecretBuilder().withMetadata(metadata).build());
          }
        }
      }
    }
    return secrets;
  }
}
