package io.leasehold.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import com.fasterxml.jackson.databind.annotation.JsonDeserialize;
import com.fasterxml.jackson.databind.annotation.JsonSerialize;
import io.fabric8.crd.generator.annotation.SchemaFrom;
import io.fabric8.kubernetes.api.model.IntOrString;
import java.util.Objects;

/** What the stored Terraform state says about itself, read without changing it. */
@JsonInclude(JsonInclude.Include.NON_NULL)
public class StateFacts extends KeepsUnknownFields {

  @JsonPropertyDescription("Name of the Secret that holds the state (the first chunk).")
  private String secretName;

  @JsonPropertyDescription(
      "The state's serial: it rises with every write. Terraform's serial is an unsigned 64-bit"
          + " number; one past 9223372036854775807 is given as a decimal string.")
  @SchemaFrom(type = IntOrString.class)
  @JsonSerialize(using = UnsignedSerial.Writer.class)
  @JsonDeserialize(using = UnsignedSerial.Reader.class)
  private Long serial;

  @JsonPropertyDescription("The state's lineage: fixed when the state is first created.")
  private String lineage;

  @JsonPropertyDescription("Terraform version that last wrote the state.")
  private String terraformVersion;

  @JsonPropertyDescription(
      "Number of resource instances in the state, data sources included (not known for an"
          + " encrypted state).")
  private Long resources;

  @JsonPropertyDescription(
      "True when the state is OpenTofu client-side encrypted: leasehold stores it as sent and"
          + " guards writes by the serial and lineage OpenTofu keeps in clear.")
  private Boolean encrypted;

  @JsonPropertyDescription("The encrypted state's format (encryption_version), when encrypted.")
  private String encryptionVersion;

  @JsonPropertyDescription("Size of the gzip-compressed state as stored, in bytes.")
  private Long compressedBytes;

  @JsonPropertyDescription("Size of the state JSON, in bytes.")
  private Long rawBytes;

  @JsonPropertyDescription("Number of Secrets the state is stored in (more than 1 past 1 MiB).")
  private Integer chunks;

  @JsonPropertyDescription(
      "Which clients cannot read the state as stored, when some cannot (a state in more than one"
          + " Secret is unreadable to OpenTofu's kubernetes backend and Terraform's before 1.10).")
  private String compatibility;

  public String getSecretName() {
    return secretName;
  }

  public void setSecretName(String secretName) {
    this.secretName = secretName;
  }

  public Long getSerial() {
    return serial;
  }

  /** The serial's bits: an unsigned 64-bit number held in a long (see {@link #serialText}). */
  public void setSerial(Long serial) {
    this.serial = serial;
  }

  /** The serial as Terraform writes it: unsigned decimal; null when unknown. */
  public String serialText() {
    return serial == null ? null : Long.toUnsignedString(serial);
  }

  /** {@code a} compared to {@code b} as the unsigned numbers Terraform's serials are. */
  public static int compareSerials(long a, long b) {
    return Long.compareUnsigned(a, b);
  }

  public Boolean getEncrypted() {
    return encrypted;
  }

  public void setEncrypted(Boolean encrypted) {
    this.encrypted = encrypted;
  }

  /** Whether the state is OpenTofu client-side encrypted. */
  public boolean encrypted() {
    return Boolean.TRUE.equals(encrypted);
  }

  public String getEncryptionVersion() {
    return encryptionVersion;
  }

  public void setEncryptionVersion(String encryptionVersion) {
    this.encryptionVersion = encryptionVersion;
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

  public String getCompatibility() {
    return compatibility;
  }

  public void setCompatibility(String compatibility) {
    this.compatibility = compatibility;
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
        && Objects.equals(encrypted, that.encrypted)
        && Objects.equals(encryptionVersion, that.encryptionVersion)
        && Objects.equals(compressedBytes, that.compressedBytes)
        && Objects.equals(rawBytes, that.rawBytes)
        && Objects.equals(chunks, that.chunks)
        && Objects.equals(compatibility, that.compatibility);
  }

  @Override
  public int hashCode() {
    return Objects.hash(
        secretName,
        serial,
        lineage,
        terraformVersion,
        resources,
        encrypted,
        encryptionVersion,
        compressedBytes,
        rawBytes,
        chunks,
        compatibility);
  }
}
