package io.leasehold.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import java.util.Objects;

/** What the stored Terraform state says about itself, read without changing it. */
@JsonInclude(JsonInclude.Include.NON_NULL)
public class StateFacts {

  @JsonPropertyDescription("Name of the Secret that holds the state (the first chunk).")
  private String secretName;

  @JsonPropertyDescription("The state's serial: it rises with every write.")
  private Long serial;

  @JsonPropertyDescription("The state's lineage: fixed when the state is first created.")
  private String lineage;

  @JsonPropertyDescription("Terraform version that last wrote the state.")
  private String terraformVersion;

  @JsonPropertyDescription("Number of resource instances in the state, data sources included.")
  private Long resources;

  @JsonPropertyDescription("Size of the gzip-compressed state as stored, in bytes.")
  private Long compressedBytes;

  @JsonPropertyDescription("Size of the state JSON, in bytes.")
  private Long rawBytes;

  @JsonPropertyDescription("Number of Secrets the state is stored in (more than 1 past 1 MiB).")
  private Integer chunks;

  public String getSecretName() {
    return secretName;
  }

  public void setSecretName(String secretName) {
    this.secretName = secretName;
  }

  public Long getSerial() {
    return serial;
  }

  public void setSerial(Long serial) {
    this.serial = serial;
  }

  public String getLineage() {
    return lineage;
  }

  public void setLineage(String lineage) {
    this.lineage = lineage;
  }

  public String getTerraformVersion() {
    return terraformVersion;
  }

  public void setTerraformVersion(String terraformVersion) {
    this.terraformVersion = terraformVersion;
  }

  public Long getResources() {
    return resources;
  }

  public void setResources(Long resources) {
    this.resources = resources;
  }

  public Long getCompressedBytes() {
    return compressedBytes;
  }

  public void setCompressedBytes(Long compressedBytes) {
    this.compressedBytes = compressedBytes;
  }

  public Long getRawBytes() {
    return rawBytes;
  }

  public void setRawBytes(Long rawBytes) {
    this.rawBytes = rawBytes;
  }

  public Integer getChunks() {
    return chunks;
  }

  public void setChunks(Integer chunks) {
    this.chunks = chunks;
  }

  @Override
  public boolean equals(Object o) {
    if (this == o) {
      return true;
    }
    if (!(o instanceof StateFacts)) {
      return false;
    }
    StateFacts that = (StateFacts) o;
    return Objects.equals(secretName, that.secretName)
        && Objects.equals(serial, that.serial)
        && Objects.equals(lineage, that.lineage)
        && Objects.equals(terraformVersion, that.terraformVersion)
        && Objects.equals(resources, that.resources)
        && Objects.equals(compressedBytes, that.compressedBytes)
        && Objects.equals(rawBytes, that.rawBytes)
        && Objects.equals(chunks, that.chunks);
  }

  @Override
  public int hashCode() {
    return Objects.hash(
        secretName,
        serial,
        lineage,
        terraformVersion,
        resources,
        compressedBytes,
        rawBytes,
        chunks);
  }
}
