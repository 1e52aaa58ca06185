package io.leasehold.state;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.StreamReadConstraints;
import io.leasehold.api.DisplayText;
import io.leasehold.api.StateFacts;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
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
 *   <li>OpenTofu's client-side encrypted state ({@code encryption_version} "v0", {@code
 *       encrypted_data}, {@code meta}) is a state too, guarded by the {@code serial} and {@code
 *       lineage} OpenTofu keeps in clear for backends; it has no {@code version}.
 * </ul>
 *
 * <p>The document is streamed: values that are not needed (resource attributes, encrypted data) are
 * skipped without being held.
 */
public final class StateJson {

  /** The only state format version Terraform 0.12 and later (and OpenTofu) write. */
  public static final int FORMAT_VERSION = 4;

  /** The encrypted-state format OpenTofu writes and reads. */
  public static final String ENCRYPTION_VERSION = "v0";

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
   * The facts of the state document {@code in}, which is read to its end (the caller counts and
   * hashes it if it needs to).
   *
   * @throws StateUnreadableException naming {@code where} when it is not a state Terraform (or
   *     OpenTofu) reads as leasehold does
   * @throws IOException when {@code in} itself fails
   */
  static StateFacts parse(InputStream in, String where, String objectName)
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
    private boolean sawVersion;
    private boolean sawSerial;
    private boolean encryptedData;
    private long instances;

    Reading(JsonParser parser, String where, String objectName) {
      this.parser = parser;
      this.where = where;
      this.objectName = objectName;
    }

    StateFacts read() throws IOException, StateUnreadableException {
      if (parser.nextToken() != JsonToken.START_OBJECT) {
        throw refuse("state is not a JSON object");
      }
      while (parser.nextToken() == JsonToken.FIELD_NAME) {
        String key = parser.currentName();
        checkKey(key);
        JsonToken value = parser.nextToken();
        switch (key) {
          case "version" -> version(value);
          case "serial" -> serial(value);
          case "lineage" -> facts.setLineage(lineage(value));
          case "terraform_version" -> facts.setTerraformVersion(terraformVersion(value));
          case "outputs", "meta" -> container(key, value, JsonToken.START_OBJECT, "an object");
          case "check_results" -> container(key, value, JsonToken.START_ARRAY, "an array");
          case "resources" -> resources(value);
          case "encryption_version" -> encryptionVersion(value);
          case "encrypted_data" -> {
            if (value != JsonToken.VALUE_STRING) {
              throw refuse("'encrypted_data' must be a string");
            }
            // Not read: it may be the whole state, and only OpenTofu can decrypt it.
            encryptedData = true;
          }
          default -> parser.skipChildren();
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

    private StateFacts finish() throws StateUnreadableException {
      boolean encrypted = facts.getEncryptionVersion() != null;
      if (encrypted) {
        if (!encryptedData) {
          throw refuse("an encrypted state (encryption_version) needs 'encrypted_data'");
        }
        if (!sawSerial || facts.getLineage() == null) {
          throw refuse(
              "an encrypted state needs its 'serial' and 'lineage' in clear (OpenTofu 1.7 and"
                  + " later keep them), so that writes can be guarded");
        }
        facts.setEncrypted(true);
        return facts;
      }
      if (encryptedData) {
        throw refuse("'encrypted_data' without 'encryption_version' is not a state");
      }
      if (!sawVersion || !sawSerial || facts.getLineage() == null) {
        throw refuse(
            "JSON is not a Terraform state (needs numeric 'version' and 'serial' and a"
                + " 'lineage')");
      }
      facts.setResources(instances);
      return facts;
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
        throw refuse(
            "'encryption_version' must be \""
                + ENCRYPTION_VERSION
                + "\", the encrypted state format OpenTofu reads");
      }
      facts.setEncryptionVersion(ENCRYPTION_VERSION);
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
