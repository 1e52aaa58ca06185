package io.leasehold.api;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import io.fabric8.crd.generator.annotation.AdditionalPrinterColumn;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * Build step run after Fabric8's CRD generator: puts the printer columns in the order they are
 * declared on {@link TerraformState} (the generator sorts them by JSON path, which would show AGE
 * first in {@code kubectl get}), and fills the descriptions the generator leaves out ({@link
 * CrdDescriptions}).
 */
public final class CrdPrinterColumns {

  private CrdPrinterColumns() {}

  public static void main(String[] args) throws IOException {
    if (args.length != 1) {
      throw new IllegalArgumentException("usage: CrdPrinterColumns <generated CRD YAML>");
    }
    Path file = Path.of(args[0]);
    String header = "# Generated from io.leasehold.api.TerraformState: do not edit.\n";
    String yaml = Files.readString(file, StandardCharsets.UTF_8);
    ObjectMapper mapper = new ObjectMapper(new YAMLFactory());
    JsonNode crd = mapper.readTree(yaml);
    List<String> order =
        Arrays.stream(TerraformState.class.getAnnotationsByType(AdditionalPrinterColumn.class))
            .map(AdditionalPrinterColumn::name)
            .toList();
    for (JsonNode version : crd.path("spec").path("versions")) {
      if (version.get("additionalPrinterColumns") instanceof ArrayNode columns) {
        List<JsonNode> sorted = new ArrayList<>();
        columns.forEach(sorted::add);
        sorted.sort(Comparator.comparingInt(c -> position(order, c.path("name").asText())));
        columns.removeAll();
        columns.addAll(sorted);
      }
    }
    CrdDescriptions.fill(crd);
    String body = mapper.writeValueAsString(crd);
    Files.writeString(file, header + body, StandardCharsets.UTF_8);
  }

  private static int position(List<String> order, String name) {
    int i = order.indexOf(name);
    return i < 0 ? Integer.MAX_VALUE : i;
  }
}
