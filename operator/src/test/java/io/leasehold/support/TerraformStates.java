package io.leasehold.support;

import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.SecretBuilder;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.api.model.coordination.v1.LeaseBuilder;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.state.StateNames;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.zip.GZIPOutputStream;

/** Builds Secrets and Leases exactly as stock Terraform's kubernetes backend writes them. */
public final class TerraformStates {

  /** Terraform (>= 1.10) splits gzip'd state into Secrets of this many bytes. */
  public static final int CHUNK_BYTES = 1_048_576;

  private TerraformStates() {}

  /** A Terraform state JSON with {@code instances} terraform_data instances. */
  public static String stateJson(long serial, String lineage, int instances) {
    return stateJson(serial, lineage, instances, "");
  }

  public static String stateJson(long serial, String lineage, int instances, String padding) {
    StringBuilder resources = new StringBuilder();
    for (int i = 0; i < instances; i++) {
      if (i > 0) {
        resources.append(',');
      }
      resources
          .append("{\"index_key\":")
          .append(i)
          .append(",\"schema_version\":0,\"attributes\":{\"id\":\"id-")
          .append(i)
          .append("\",\"input\":{\"value\":\"")
          .append(padding)
          .append("\",\"type\":\"string\"}}}");
    }
    return "{\"version\":4,\"terraform_version\":\"1.11.4\",\"serial\":"
        + serial
        + ",\"lineage\":\""
        + lineage
        + "\",\"outputs\":{},\"resources\":[{\"mode\":\"managed\",\"type\":\"terraform_data\","
        + "\"name\":\"r\",\"provider\":\"provider[\\\"terraform.io/builtin/terraform\\\"]\","
        + "\"instances\":["
        + resources
        + "]}],\"check_results\":null}";
  }

  public static byte[] gzip(byte[] data) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    try (GZIPOutputStream gz = new GZIPOutputStream(out)) {
      gz.write(data);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return out.toByteArray();
  }

  /**
   * A state JSON of about {@code bytes} bytes, padded with random base64 (gzip barely shrinks it).
   */
  public static String randomState(long serial, String lineage, int bytes, long seed) {
    byte[] noise = new byte[Math.max(1, (bytes - 400) * 3 / 4)];
    new java.util.Random(seed).nextBytes(noise);
    return stateJson(serial, lineage, 1, Base64.getEncoder().encodeToString(noise));
  }

  /**
   * Gzip of {@code data} in deflate's stored (uncompressed) blocks: a valid gzip stream, as any
   * reader takes it, whose length is exactly {@link #storedGzipLength} of the data's length.
   */
  public static byte[] storedGzip(byte[] data) {
    java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
    out.writeBytes(new byte[] {0x1f, (byte) 0x8b, 8, 0, 0, 0, 0, 0, 0, (byte) 0xff});
    int offset = 0;
    do {
      int n = Math.min(65535, data.length - offset);
      boolean last = offset + n == data.length;
      out.write(last ? 1 : 0);
      out.write(n & 0xff);
      out.write(n >>> 8);
      out.write(~n & 0xff);
      out.write((~n >>> 8) & 0xff);
      out.write(data, offset, n);
      offset += n;
    } while (offset < data.length);
    java.util.zip.CRC32 crc = new java.util.zip.CRC32();
    crc.update(data);
    writeIntLe(out, (int) crc.getValue());
    writeIntLe(out, data.length);
    return out.toByteArray();
  }

  /** The length of {@link #storedGzip} of {@code n} bytes. */
  public static long storedGzipLength(long n) {
    return 18 + n + 5 * Math.max(1, (n + 65534) / 65535);
  }

  /**
   * A state JSON whose {@link #storedGzip} is exactly {@code gzipBytes} long, so that it fills its
   * Secrets to the byte.
   */
  public static String stateForStoredGzipOf(long gzipBytes, long serial, String lineage) {
    int base = stateJson(serial, lineage, 1, "").length();
    long n = gzipBytes - 18 - 5 * ((gzipBytes + 65534) / 65535);
    while (storedGzipLength(n) < gzipBytes) {
      n++;
    }
    while (storedGzipLength(n) > gzipBytes) {
      n--;
    }
    if (storedGzipLength(n) != gzipBytes) {
      throw new IllegalArgumentException("no stored gzip is exactly " + gzipBytes + " bytes");
    }
    return stateJson(serial, lineage, 1, "x".repeat((int) (n - base)));
  }

  private static void writeIntLe(java.io.ByteArrayOutputStream out, int v) {
    out.write(v & 0xff);
    out.write((v >>> 8) & 0xff);
    out.write((v >>> 16) & 0xff);
    out.write((v >>> 24) & 0xff);
  }

  /** The Secrets Terraform writes for {@code stateJson}: main first, then -part-N chunks. */
  public static List<Secret> secrets(StateNames names, String stateJson) {
    return secretsOfGzip(names, gzip(stateJson.getBytes(StandardCharsets.UTF_8)));
  }

  public static List<Secret> secretsOfGzip(StateNames names, byte[] gz) {
    List<Secret> secrets = new ArrayList<>();
    for (int offset = 0, n = 0; offset < gz.length; offset += CHUNK_BYTES, n++) {
      byte[] chunk = Arrays.copyOfRange(gz, offset, Math.min(gz.length, offset + CHUNK_BYTES));
      secrets.add(secret(names, n == 0 ? names.secretName() : names.chunkSecretName(n), chunk));
    }
    return secrets;
  }

  public static Secret secret(StateNames names, String name, byte[] data) {
    return new SecretBuilder()
        .withNewMetadata()
        .withName(name)
        .withNamespace(names.namespace())
        .withLabels(names.terraformLabels())
        .withAnnotations(Map.of("encoding", "gzip"))
        .endMetadata()
        .withData(Map.of("tfstate", Base64.getEncoder().encodeToString(data)))
        .build();
  }

  /** A Lease as stock Terraform leaves it while it holds the lock. */
  public static Lease heldLease(StateNames names, LockInfo info) {
    return new LeaseBuilder()
        .withNewMetadata()
        .withName(names.leaseName())
        .withNamespace(names.namespace())
        .withLabels(names.terraformLabels())
        .withAnnotations(Map.of(LeaseLock.LOCK_INFO_ANNOTATION, info.toJson()))
        .endMetadata()
        .withNewSpec()
        .withHolderIdentity(info.id())
        .endSpec()
        .build();
  }

  public static LockInfo terraformLock(String id, String who) {
    return new LockInfo(
        id, "OperationTypeApply", "", who, "1.11.4", "2026-11-26T10:00:00.000000Z", "");
  }
}
