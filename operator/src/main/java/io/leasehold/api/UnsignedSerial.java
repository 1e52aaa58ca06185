package io.leasehold.api;

import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.DeserializationContext;
import com.fasterxml.jackson.databind.JsonDeserializer;
import com.fasterxml.jackson.databind.JsonSerializer;
import com.fasterxml.jackson.databind.SerializerProvider;
import java.io.IOException;

/**
 * A Terraform serial (unsigned 64-bit) in a status field an API server keeps: an integer while it
 * fits a signed 64-bit integer (what the API server stores as one), a decimal string beyond.
 */
final class UnsignedSerial {

  private UnsignedSerial() {}

  static final class Writer extends JsonSerializer<Long> {
    @Override
    public void serialize(Long serial, JsonGenerator out, SerializerProvider provider)
        throws IOException {
      if (serial >= 0) {
        out.writeNumber(serial);
      } else {
        out.writeString(Long.toUnsignedString(serial));
      }
    }
  }

  static final class Reader extends JsonDeserializer<Long> {
    @Override
    public Long deserialize(JsonParser in, DeserializationContext context) throws IOException {
      if (in.currentToken() == JsonToken.VALUE_STRING) {
        try {
          return Long.parseUnsignedLong(in.getText().trim());
        } catch (NumberFormatException e) {
          return (Long) context.handleWeirdStringValue(Long.class, in.getText(), e.getMessage());
        }
      }
      return in.getLongValue();
    }
  }
}
