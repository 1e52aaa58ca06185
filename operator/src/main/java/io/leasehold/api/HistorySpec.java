package io.leasehold.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Default;
import io.fabric8.generator.annotation.Max;
import io.fabric8.generator.annotation.Min;

@JsonInclude(JsonInclude.Include.NON_NULL)
public class HistorySpec extends KeepsUnknownFields {

  public static final int DEFAULT_KEEP = 10;

  @JsonPropertyDescription(
      "Number of earlier state versions kept in history Secrets (0 keeps none).")
  @Default("10")
  @Min(0)
  @Max(100)
  private Integer keep = DEFAULT_KEEP;

  public int getKeep() {
    return keep == null ? DEFAULT_KEEP : keep;
  }

  public void setKeep(Integer keep) {
    this.keep = keep;
  }
}
