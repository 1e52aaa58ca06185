package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * A write the embedded API stored: its HTTP method, its path and the object it answered with (the
 * stored object, or the Status of a deletion).
 */
public record StoredWrite(String method, String path, JsonNode object) {}
