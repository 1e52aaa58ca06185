package io.leasehold.support;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.Base64;

/**
 * OpenTofu's client-side encrypted states, made from one the real {@code tofu} wrote (test resource
 * {@code io/leasehold/state/opentofu/pbkdf2-aes-gcm.json}), and the decoy that only looks like one.
 */
public final class OpenTofuStates {

  private static final ObjectMapper JSON = new ObjectMapper();

  /** The output the real envelopes' plaintext holds (tofu output secret). */
  public static final String SEALED_SECRET = "s3cr3t-value";

  private OpenTofuStates() {}

  /** A state exactly as OpenTofu wrote it (a test resource under io/leasehold/state/opentofu/). */
  public static String real(String name) {
    try (InputStream in =
        OpenTofuStates.class.getResourceAsStream(
            "/io/leasehold/state/opentofu/" + name + ".json")) {
      if (in == null) {
        throw new IllegalArgumentException("no OpenTofu state " + name);
      }
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /**
   * An encrypted state in OpenTofu's form (Go's field order, no spaces) with the clear {@code
   * serial} and {@code lineage} given: the real envelope's, its sealed bytes followed by {@code
   * variant}'s, so that two variants are two contents. leasehold never decrypts, so it cannot tell
   * these from what tofu sends; tofu itself would refuse them (the clear fields no longer match).
   */
  public static String encrypted(long serial, String lineage, String variant) {
    try {
      ObjectNode real = (ObjectNode) JSON.readTree(real("pbkdf2-aes-gcm"));
      byte[] sealed = Base64.getDecoder().decode(real.get("encrypted_data").asText());
      byte[] extra = variant.getBytes(StandardCharsets.UTF_8);
      byte[] data = new byte[sealed.length + extra.length];
      System.arraycopy(sealed, 0, data, 0, sealed.length);
      System.arraycopy(extra, 0, data, sealed.length, extra.length);
      ObjectNode out = JSON.createObjectNode();
      out.put("serial", serial);
      out.put("lineage", lineage);
      out.set("meta", real.get("meta"));
      out.put("encrypted_data", Base64.getEncoder().encodeToString(data));
      out.put("encryption_version", "v0");
      return JSON.writeValueAsString(out);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  public static String encrypted(long serial, String lineage) {
    return encrypted(serial, lineage, "");
  }

  /**
   * A plaintext state whose output {@code secret} is {@code secret}, with decoy encryption fields
   * beside it ({@code "meta":{},"encrypted_data":"AAAA","encryption_version":"v0"}): Terraform
   * reads the plaintext and ignores them.
   */
  public static String decoy(long serial, String lineage, String secret) {
    return "{\"version\":4,\"terraform_version\":\"1.11.4\",\"serial\":"
        + serial
        + ",\"lineage\":\""
        + lineage
        + "\",\"outputs\":{\"secret\":{\"value\":\""
        + secret
        + "\",\"type\":\"string\"}},\"resources\":[],\"check_results\":null,"
        + "\"meta\":{},\"encrypted_data\":\"AAAA\",\"encryption_version\":\"v0\"}";
  }
}
