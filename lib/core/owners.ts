/**
 * Isolation between API keys: every job and conversation belongs to the key
 * that created it. Conversations are stored under a key-scoped id, so two
 * keys that use the same `conversation_id` never see each other's history.
 */

/** A key's owner id: the first 8 bytes of its SHA-256 digest in hex. The key itself is never stored or logged. */
export function ownerFromDigest(digest: Uint8Array): string {
  return Array.from(digest.slice(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The stored id of a client's conversation. Without an owner (no keys configured) it is the id itself. */
export function scopedConversationId(owner: string | undefined, conversationId: string): string {
  return owner ? `${owner}/${conversationId}` : conversationId;
}

/** The client's conversation id for a stored one. */
export function clientConversationId(owner: string | undefined, storedId: string): string {
  return owner && storedId.startsWith(`${owner}/`) ? storedId.slice(owner.length + 1) : storedId;
}
