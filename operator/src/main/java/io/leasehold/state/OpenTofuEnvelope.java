package io.leasehold.state;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;

/**
 * What counts as an OpenTofu client-side encrypted state: exactly the document OpenTofu writes and
 * could decrypt, nothing more. OpenTofu (internal/encryption: base.go, state.go) marshals one Go
 * struct for it, so its top-level keys are exactly
 *
 * <ul>
 *   <li>{@code serial} and {@code lineage}, kept in clear so that backends can guard writes;
 *   <li>{@code meta}: an object of key-provider metadata, each value a Go {@code []byte} (standard,
 *       padded base64) holding the JSON object the key provider wrote (pbkdf2's salt, iterations,
 *       hash function and key length; a KMS's wrapped key; an external program's data);
 *   <li>{@code encrypted_data}: a Go {@code []byte} too, the sealed state; for AES-GCM (its only
 *       built-in method) the 12-byte nonce, the ciphertext and the 16-byte tag;
 *   <li>{@code encryption_version}: {@code "v0"}.
 * </ul>
 *
 * <p>A document with these fields next to any other (a plaintext state's {@code version}, {@code
 * resources}, {@code outputs}) is not encrypted: Terraform reads its plaintext and ignores the
 * rest. The form is all leasehold can check: whether the sealed bytes are strong encryption is
 * OpenTofu's method's to say. This class keeps what one pass over a document saw and judges it; it
 * reads no input itself (see {@link StateJson}).
 */
final class OpenTofuEnvelope {

  /** The format OpenTofu writes and reads. */
  static final String VERSION = "v0";

  /** AES-GCM's nonce (12 bytes) and tag (16): no sealed state OpenTofu writes is shorter. */
  static final int MIN_SEALED_BYTES = 12 + 16;

  /** Key-provider metadata larger than this is not kept to be checked (OpenTofu's are small). */
  static final int MAX_METADATA_BYTES = 64 * 1024;

  /** The plaintext state's keys, named in messages (other keys are never repeated back). */
  static final Set<String> PLAINTEXT_KEYS =
      Set.of("version", "terraform_version", "outputs", "resources", "check_results");

  /** How a value of {@code meta} that is not key-provider metadata is told. */
  static final String NOT_METADATA =
      "each value of 'meta' must be base64 of the JSON object a key provider wrote";

  private static final JsonFactory JSON = new JsonFactory();

  private final Set<String> plaintextKeys = new TreeSet<>();
  private boolean otherKeys;
  private boolean meta;
  private boolean sealed;
  private boolean version;
  private String metaFault;
  private long sealedBytes = -1;

  /** A top-level key of a plaintext state, or any other key OpenTofu's envelope does not have. */
  void plaintextKey(String key) {
    if (PLAINTEXT_KEYS.contains(key)) {
      plaintextKeys.add(key);
    } else {
      otherKeys = true;
    }
  }

  /** {@code meta} was seen; {@code fault} says how it differs from OpenTofu's, or is null. */
  void meta(String fault) {
    meta = true;
    metaFault = fault;
  }

  /** {@code encrypted_data} was seen, decoding to {@code bytes} bytes. */
  void sealed(long bytes) {
    sealed = true;
    sealedBytes = bytes;
  }

  /** {@code encryption_version} was seen (and is {@link #VERSION}). */
  void version() {
    version = true;
  }

  /** Whether the document carries a field only an encrypted state has. */
  boolean claimed() {
    return version || sealed;
  }

  /**
   * How the document differs from the state OpenTofu encrypts, or null when it is exactly that
   * (given clear {@code serial} and {@code lineage}, which {@link StateJson} checks). The text
   * names fields and kinds only, never their content.
   */
  String flaw(boolean clearSerialAndLineage) {
    if (!plaintextKeys.isEmpty() || otherKeys) {
      List<String> named = new ArrayList<>();
      plaintextKeys.forEach(k -> named.add("'" + k + "'"));
      if (otherKeys) {
        named.add("other keys");
      }
      return "it carries OpenTofu's encryption fields next to plaintext state fields ("
          + String.join(", ", named)
          + "); OpenTofu's encrypted state has 'serial', 'lineage', 'meta', 'encrypted_data'"
          + " and 'encryption_version' only";
    }
    if (!version) {
      return "'encrypted_data' without 'encryption_version' is not OpenTofu's encrypted state";
    }
    if (!sealed) {
      return "an encrypted state (encryption_version) needs 'encrypted_data'";
    }
    if (!clearSerialAndLineage) {
      return "an encrypted state needs its 'serial' and 'lineage' in clear (OpenTofu 1.7 and"
          + " later keep them), so that writes can be guarded";
    }
    if (!meta) {
      return "an encrypted state needs 'meta', the key providers' metadata OpenTofu writes with"
          + " it";
    }
    if (metaFault != null) {
      return metaFault;
    }
    if (sealedBytes < MIN_SEALED_BYTES) {
      return "'encrypted_data' holds "
          + sealedBytes
          + " bytes, fewer than the "
          + MIN_SEALED_BYTES
          + " of AES-GCM's nonce and tag: it is not a state OpenTofu sealed";
    }
    return null;
  }

  /**
   * Why {@code decoded}, a value of {@code meta}, is not key-provider metadata as OpenTofu writes
   * it (one JSON object), or null when it is.
   */
  static String metadataFault(byte[] decoded) {
    try (JsonParser p = JSON.createParser(decoded)) {
      if (p.nextToken() == JsonToken.START_OBJECT) {
        p.skipChildren();
        if (p.nextToken() == null) {
          return null;
        }
      }
    } catch (IOException e) {
      // Not JSON: told below, without the parser's message (it quotes the text).
    }
    return NOT_METADATA;
  }
}
