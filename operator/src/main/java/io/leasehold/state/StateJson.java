package io.leasehold.state;

import com.fasterxml.jackson.core.Base64Variant;
import com.fasterxml.jackson.core.Base64Variants;
import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.core.io.JsonEOFException;
import io.leasehold.api.DisplayText;
import io.leasehold.api.StateFacts;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.Reader;
import java.math.BigInteger;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * Reads a state JSON document the way Terraform (and OpenTofu) read it, and refuses what they would
 * read differently or not at all, so that whatever leasehold accepts or reports, the client reads
 * the same:
 *
 * <ul>
 *   <li>UTF-8 only (no byte-order mark, no UTF-16), one JSON object and nothing after it;
 *   <li>{@code version} 4; {@code serial} an integer from 0 to 2<sup>64</sup>-1 (Terraform's
 *       uint64: no fraction, no exponent, no sign); {@code lineage} a non-empty string; {@code
 *       terraform_version} a version string; {@code outputs} an object and {@code resources} and
 *       {@code check_results} arrays (or null);
 *   <li>no top-level key twice, and none that matches a state key only when case is ignored: Go's
 *       JSON decoding matches keys case-insensitively and keeps the last, so {@code "Serial"} next
 *       to {@code "serial"} would be one state to leasehold and another to Terraform;
 *   <li>OpenTofu's client-side encrypted state is a state too, guarded by the {@code serial} and
 *       {@code lineage} OpenTofu keeps in clear for backends; it counts as encrypted only when it
 *       is exactly what OpenTofu writes ({@link OpenTofuEnvelope}), so that a plaintext state with
 *       OpenTofu's fields beside it is never taken, or shown, as encrypted.
 * </ul>
 *
 * <p>The document is streamed: values that are not needed (resource attributes, encrypted data) are
 * skipped without being held.
 */
public final class StateJson {

  /** The only state format version Terraform 0.12 and later (and OpenTofu) write. */
  public static final int FORMAT_VERSION = 4;

  /** The encrypted-state format OpenTofu writes and reads. */
  public static final String ENCRYPTION_VERSION = OpenTofuEnvelope.VERSION;

  /** Go's {@code []byte} in JSON: standard base64, padded. */
  private static final Base64Variant BASE64 =
      Base64Variants.MIME_NO_LINEFEEDS.withPaddingRequired();

  /** Longest lineage accepted: it is shown in status and kept in history annotations. */
  public static final int MAX_LINEAGE = 256;

  private static final BigInteger MAX_SERIAL =
      BigInteger.ONE.shiftLeft(64).subtract(BigInteger.ONE);

  /** Go's hashicorp/go-version syntax, which Terraform checks terraform_version against. */
  private static final Pattern VERSION =
      Pattern.compile(
          "v?([0-9]+(\\.[0-9]+)*?)(-([0-9]+[0-9A-Za-z\\-~]*(\\.[0-9A-Za-z\\-~]+)*)"
              + "|(-?([A-Za-z\\-~]+[0-9A-Za-z\\-~]*(\\.[0-9A-Za-z\\-~]+)*)))?"
              + "(\\+([0-9A-Za-z\\-~]+(\\.[0-9A-Za-z\\-~]+)*))?");

  private static final Set<String> KEYS =
      Set.of(
          "version",
          "terraform_version",
          "serial",
          "lineage",
          "outputs",
          "resources",
          "check_results",
          "meta",
          "encrypted_data",
          "encryption_version");

  private static final Map<String, String> KEYS_BY_FOLD = new HashMap<>();

  static {
    KEYS.forEach(k -> KEYS_BY_FOLD.put(fold(k), k));
  }

  /** Nesting as deep as Go's decoder allows (Jackson's default is lower). */
  private static final JsonFactory JSON =
      JsonFactory.builder()
          .streamReadConstraints(StreamReadConstraints.builder().maxNestingDepth(10_000).build())
          .build();

  private StateJson() {}

  /**
   * A state document read: its facts and, when it is not OpenTofu-encrypted, why (naming fields,
   * never their content).
   */
  record Document(StateFacts facts, String notEncrypted) {}

  /**
   * The facts of the state document {@code in}, which is read to its end (the caller counts and
   * hashes it if it needs to).
   *
   * @throws StateUnreadableException naming {@code where} when it is not a state Terraform (or
   *     OpenTofu) reads as leasehold does
   * @throws IOException when {@code in} itself fails
   */
  static StateFacts parse(InputStream in, String where, String objectName)
      throws IOException, StateUnreadableException {
    return read(in, where, objectName).facts();
  }

  /**
   * The state document {@code in} as {@link #parse} reads it, with why it is not encrypted.
   *
   * @throws NotEncryptedException when it carries OpenTofu's encryption fields but is neither
   *     OpenTofu's encrypted state nor a plaintext state
   */
  static Document read(InputStream in, String where, String objectName)
      throws IOException, StateUnreadableException {
    // A Reader with a strict UTF-8 decoder: Jackson would otherwise guess UTF-16 or UTF-32 from
    // the first bytes and skip a byte-order mark, both of which Go's decoder refuses.
    Reader utf8 =
        new InputStreamReader(
            in,
            StandardCharsets.UTF_8
                .newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT));
    try (JsonParser parser = JSON.createParser(utf8)) {
      return new Reading(parser, where, objectName).read();
    } catch (CharacterCodingException e) {
      throw new StateUnreadableException(objectName, where + ": the state is not valid UTF-8", e);
    } catch (JsonProcessingException e) {
      // The parser's own message quotes the text it choked on: only the kind and the position.
      throw new StateUnreadableException(
          objectName, where + ": state is " + ParseFault.describe(e), e);
    }
  }

  /**
   * {@code json}, a state document already read by {@link #parse}, with its top-level {@code
   * serial} set to {@code serial} (unsigned): every other byte stays as it was.
   */
  public static byte[] withSerial(byte[] json, long serial) throws IOException {
    try (JsonParser parser = JSON.createParser(json)) {
      if (parser.nextToken() != JsonToken.START_OBJECT) {
        throw new IOException("not a JSON object");
      }
      while (parser.nextToken() == JsonToken.FIELD_NAME) {
        String key = parser.currentName();
        JsonToken value = parser.nextToken();
        if ("serial".equals(key) && value == JsonToken.VALUE_NUMBER_INT) {
          int start = (int) parser.currentTokenLocation().getByteOffset();
          int end = start + parser.getTextLength();
          byte[] text = Long.toUnsignedString(serial).getBytes(StandardCharsets.US_ASCII);
          byte[] out = new byte[json.length - (end - start) + text.length];
          System.arraycopy(json, 0, out, 0, start);
          System.arraycopy(text, 0, out, start, text.length);
          System.arraycopy(json, end, out, start + text.length, json.length - end);
          return out;
        }
        parser.skipChildren();
      }
    }
    throw new IOException("the state has no top-level serial");
  }

  /** One pass over one document. */
  private static final class Reading {
    private final JsonParser parser;
    private final String where;
    private final String objectName;
    private final Map<String, String> seen = new HashMap<>();
    private final StateFacts facts = new StateFacts();
    private final OpenTofuEnvelope envelope = new OpenTofuEnvelope();
    private boolean sawVersion;
    private boolean sawSerial;
    private long instances;

    Reading(JsonParser parser, String where, String objectName) {
      this.parser = parser;
      this.where = where;
      this.objectName = objectName;
    }

    Document read() throws IOException, StateUnreadableException {
      if (parser.nextToken() != JsonToken.START_OBJECT) {
        throw refuse("state is not a JSON object");
      }
      while (parser.nextToken() == JsonToken.FIELD_NAME) {
        String key = parser.currentName();
        checkKey(key);
        JsonToken value = parser.nextToken();
        switch (key) {
          case "serial" -> serial(value);
          case "lineage" -> facts.setLineage(lineage(value));
          case "meta" -> meta(value);
          case "encryption_version" -> encryptionVersion(value);
          case "encrypted_data" -> encryptedData(value);
          default -> {
            envelope.plaintextKey(key);
            switch (key) {
              case "version" -> version(value);
              case "terraform_version" -> facts.setTerraformVersion(terraformVersion(value));
              case "outputs" -> container(key, value, JsonToken.START_OBJECT, "an object");
              case "check_results" -> container(key, value, JsonToken.START_ARRAY, "an array");
              case "resources" -> resources(value);
              default -> parser.skipChildren();
            }
          }
        }
      }
      if (parser.currentToken() != JsonToken.END_OBJECT) {
        throw refuse("state JSON is malformed");
      }
      // Reads to the end so that truncated or trailing data is noticed.
      if (parser.nextToken() != null) {
        throw refuse("data after the state JSON object");
      }
      return finish();
    }

    private Document finish() throws StateUnreadableException {
      boolean plaintext = sawVersion && sawSerial && facts.getLineage() != null;
      if (envelope.claimed()) {
        String flaw = envelope.flaw(sawSerial && facts.getLineage() != null);
        if (flaw == null) {
          facts.setEncrypted(true);
          facts.setEncryptionVersion(ENCRYPTION_VERSION);
          return new Document(facts, null);
        }
        if (!plaintext) {
          throw notEncrypted(flaw);
        }
        // Terraform reads it as the plaintext state it is, and so does leasehold.
        facts.setResources(instances);
        return new Document(facts, flaw);
      }
      if (!plaintext) {
        throw refuse(
            "JSON is not a Terraform state (needs numeric 'version' and 'serial' and a"
                + " 'lineage')");
      }
      facts.setResources(instances);
      return new Document(facts, "it is plaintext");
    }

    private void checkKey(String key) throws StateUnreadableException {
      String folded = fold(key);
      String before = seen.put(folded, key);
      String known = KEYS_BY_FOLD.get(folded);
      if (before != null) {
        // Only the names of state keys are repeated back: others may be anything.
        String name = known == null ? "a top-level key" : "key '" + known + "'";
        throw refuse(
            before.equals(key)
                ? name + " appears twice; Terraform would read only the last"
                : name
                    + " appears twice, in letters of different case; Terraform matches keys"
                    + " whatever their case and would read only the last");
      }
      if (known != null && !known.equals(key)) {
        throw refuse(
            "a top-level key is '"
                + known
                + "' in letters of different case: Terraform matches keys whatever their case"
                + " and reads it as '"
                + known
                + "'; write it as '"
                + known
                + "'");
      }
    }

    private void version(JsonToken value) throws IOException, StateUnreadableException {
      if (value != JsonToken.VALUE_NUMBER_INT || !parser.getText().equals("4")) {
        throw refuse(
            "'version' must be "
                + FORMAT_VERSION
                + ", the state format of Terraform 0.12 and later (found "
                + found(value)
                + ")");
      }
      sawVersion = true;
    }

    private void serial(JsonToken value) throws IOException, StateUnreadableException {
      if (value != JsonToken.VALUE_NUMBER_INT || parser.getText().startsWith("-")) {
        throw refuse(
            "'serial' must be a whole number from 0 to 18446744073709551615 (found "
                + found(value)
                + ")");
      }
      BigInteger serial = parser.getBigIntegerValue();
      if (serial.compareTo(MAX_SERIAL) > 0) {
        throw refuse(
            "'serial' "
                + shown(parser.getText())
                + " is over 18446744073709551615, the largest serial Terraform reads");
      }
      facts.setSerial(serial.longValue());
      sawSerial = true;
    }

    private String lineage(JsonToken value) throws IOException, StateUnreadableException {
      if (value != JsonToken.VALUE_STRING) {
        throw refuse("'lineage' must be a string");
      }
      String lineage = parser.getText();
      if (lineage.isEmpty() || lineage.length() > MAX_LINEAGE || DisplayText.hasUnsafe(lineage)) {
        throw refuse(
            "'lineage' must be 1 to "
                + MAX_LINEAGE
                + " printable characters (Terraform writes a UUID)");
      }
      return lineage;
    }

    private String terraformVersion(JsonToken value) throws IOException, StateUnreadableException {
      if (value == JsonToken.VALUE_NULL) {
        return null;
      }
      if (value != JsonToken.VALUE_STRING
          || parser.getTextLength() > 64
          || !(parser.getText().isEmpty() || VERSION.matcher(parser.getText()).matches())) {
        throw refuse(
            "'terraform_version' must be a version string such as 1.11.4; Terraform refuses"
                + " other values");
      }
      return parser.getText().isEmpty() ? null : parser.getText();
    }

    private void encryptionVersion(JsonToken value) throws IOException, StateUnreadableException {
      if (value != JsonToken.VALUE_STRING || !ENCRYPTION_VERSION.equals(parser.getText())) {
        throw notEncrypted(
            "'encryption_version' must be \""
                + ENCRYPTION_VERSION
                + "\", the encrypted state format OpenTofu reads");
      }
      envelope.version();
    }

    /** The sealed state: checked as OpenTofu's, streamed and counted, never held. */
    private void encryptedData(JsonToken value) throws IOException, StateUnreadableException {
      if (value != JsonToken.VALUE_STRING) {
        throw notEncrypted("'encrypted_data' must be a string");
      }
      envelope.sealed(base64("encrypted_data", OutputStream.nullOutputStream()));
    }

    /**
     * The key providers' metadata: an object of base64 strings, each a JSON object. Where it
     * differs, a plaintext state may still carry it (Terraform ignores it), so only a value that is
     * not base64 at all is refused here.
     */
    private void meta(JsonToken value) throws IOException, StateUnreadableException {
      if (value == JsonToken.VALUE_NULL) {
        envelope.meta("'meta' must be an object");
        return;
      }
      if (value != JsonToken.START_OBJECT) {
        throw refuse("'meta' must be an object");
      }
      String fault = null;
      while (parser.nextToken() == JsonToken.FIELD_NAME) {
        if (parser.nextToken() != JsonToken.VALUE_STRING) {
          parser.skipChildren();
          fault = fault != null ? fault : OpenTofuEnvelope.NOT_METADATA;
          continue;
        }
        Kept kept = new Kept(OpenTofuEnvelope.MAX_METADATA_BYTES);
        base64("meta", kept);
        if (fault == null) {
          fault =
              kept.over
                  ? "a value of 'meta' is over "
                      + OpenTofuEnvelope.MAX_METADATA_BYTES
                      + " bytes: not key-provider metadata OpenTofu writes"
                  : OpenTofuEnvelope.metadataFault(kept.toByteArray());
        }
      }
      envelope.meta(fault);
    }

    /**
     * The current string read as Go reads a {@code []byte} OpenTofu wrote: standard base64, padded,
     * and nothing else in the string (no white space, no escapes: Go's encoder writes none),
     * decoded into {@code out} as it streams by.
     *
     * @return the number of bytes it decodes to
     */
    private long base64(String key, OutputStream out) throws IOException, StateUnreadableException {
      long start = parser.currentTokenLocation().getCharOffset();
      long decoded;
      try {
        decoded = parser.readBinaryValue(BASE64, out);
      } catch (JsonEOFException e) {
        throw e;
      } catch (JsonProcessingException | IllegalArgumentException e) {
        // The parser's message quotes the character: only the field is named.
        throw notEncrypted("'" + key + "' must be standard base64, as OpenTofu writes it");
      }
      long chars = parser.currentLocation().getCharOffset() - start - 2;
      if (chars != (decoded + 2) / 3 * 4) {
        throw notEncrypted("'" + key + "' must be standard base64, as OpenTofu writes it");
      }
      return decoded;
    }

    private void container(String key, JsonToken value, JsonToken expected, String what)
        throws IOException, StateUnreadableException {
      if (value == JsonToken.VALUE_NULL) {
        return;
      }
      if (value != expected) {
        throw refuse("'" + key + "' must be " + what);
      }
      parser.skipChildren();
    }

    /** Counts resource instances, data sources included, without reading their attributes. */
    private void resources(JsonToken value) throws IOException, StateUnreadableException {
      if (value == JsonToken.VALUE_NULL) {
        return;
      }
      if (value != JsonToken.START_ARRAY) {
        throw refuse("'resources' must be an array");
      }
      JsonToken resource;
      while ((resource = parser.nextToken()) != JsonToken.END_ARRAY) {
        if (resource != JsonToken.START_OBJECT) {
          throw refuse("each of 'resources' must be an object");
        }
        while (parser.nextToken() == JsonToken.FIELD_NAME) {
          String field = parser.currentName();
          JsonToken token = parser.nextToken();
          if ("instances".equals(field) && token == JsonToken.START_ARRAY) {
            while (parser.nextToken() != JsonToken.END_ARRAY) {
              parser.skipChildren();
              instances++;
            }
          } else {
            parser.skipChildren();
          }
        }
      }
    }

    /** A value as a message may show it: a number as it is, anything else by its kind. */
    private String found(JsonToken value) throws IOException {
      return switch (value) {
        case VALUE_NUMBER_INT, VALUE_NUMBER_FLOAT -> shown(parser.getText());
        case VALUE_STRING -> "a string";
        case VALUE_TRUE, VALUE_FALSE -> "a boolean";
        case VALUE_NULL -> "null";
        case START_OBJECT -> "an object";
        case START_ARRAY -> "an array";
        default -> "something else";
      };
    }

    private StateUnreadableException refuse(String why) {
      return new StateUnreadableException(objectName, where + ": " + why);
    }

    private NotEncryptedException notEncrypted(String why) {
      return new NotEncryptedException(objectName, where + ": " + why);
    }
  }

  /** Keeps the first {@code max} bytes written to it, and whether there were more. */
  private static final class Kept extends ByteArrayOutputStream {
    private final int max;
    private boolean over;

    Kept(int max) {
      this.max = max;
    }

    @Override
    public synchronized void write(byte[] b, int off, int len) {
      int room = max - count;
      if (len > room) {
        over = true;
      }
      super.write(b, off, Math.max(0, Math.min(len, room)));
    }

    @Override
    public synchronized void write(int b) {
      if (count >= max) {
        over = true;
        return;
      }
      super.write(b);
    }
  }

  /** A key as Go's decoder compares it: each character case-folded. */
  static String fold(String key) {
    StringBuilder out = new StringBuilder(key.length());
    key.codePoints()
        .forEach(cp -> out.appendCodePoint(Character.toLowerCase(Character.toUpperCase(cp))));
    return out.toString().toLowerCase(Locale.ROOT);
  }

  private static String shown(String text) {
    return DisplayText.clean(text, 64);
  }
}
