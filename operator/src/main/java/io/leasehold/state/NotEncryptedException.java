package io.leasehold.state;

/**
 * A document that carries OpenTofu's encryption fields ({@code encryption_version}, {@code
 * encrypted_data}) but is neither the encrypted state OpenTofu writes nor a plaintext state
 * Terraform reads. Where encryption is required it is refused as not encrypted, elsewhere as not a
 * state; the message names the fault, never the content.
 */
public final class NotEncryptedException extends StateUnreadableException {
  public NotEncryptedException(String objectName, String message) {
    super(objectName, message);
  }
}
