/**
 * Values too large for one Deno KV entry (64 KiB): a conversation's messages
 * and a long reply, kept as JSON cut into numbered pieces beside the entry
 * that says how many there are.
 */
import type { ChatMessage } from "../../core/messages.ts";

/** The most bytes of JSON one KV value holds here. */
export const CHUNK_BYTES = 60_000;

/**
 * A conversation's header: how many messages it has and its line of
 * unfinished jobs. Its messages are kept in `chunks` pieces
 * (`["conversation_chunk", id, n]`, bytes). A conversation written before
 * chunks has no `chunks` and a message per entry (`["message", id, n]`); it
 * is rewritten in chunks the next time it changes.
 */
export interface ConversationHead {
  conversation_id: string;
  updated_at?: string;
  latest_job_at?: string;
  count: number;
  pending: string[];
  chunks?: number;
}

export const conversationKey = (id: string): Deno.KvKey => ["conversation", id];
const messagesPrefix = (id: string): Deno.KvKey => ["message", id];
const chunkKey = (id: string, n: number): Deno.KvKey => ["conversation_chunk", id, n];

/** The header of a conversation that has none yet. */
export function emptyHead(conversationId: string): ConversationHead {
  return { conversation_id: conversationId, count: 0, pending: [] };
}

/** A conversation's messages, from its chunks or, written before chunks, its entries. */
export async function readMessages(kv: Deno.Kv, head: ConversationHead): Promise<ChatMessage[]> {
  const id = head.conversation_id;
  if (head.chunks === undefined) {
    return await Array.fromAsync(
      kv.list<ChatMessage>({ prefix: messagesPrefix(id) }),
      (entry) => entry.value,
    );
  }
  if (head.chunks === 0) return [];
  const pieces = await readPieces(kv, head.chunks, (n) => chunkKey(id, n), `conversation "${id}"`);
  return JSON.parse(new TextDecoder().decode(pieces));
}

/**
 * Adds to `atomic` the writes that make a conversation hold `messages`, in
 * chunks, and returns its new header (for the caller to set, with its own
 * changes). Old chunks past the new end, and entries of the layout before
 * chunks, are deleted.
 */
export function writeMessages(
  atomic: Deno.AtomicOperation,
  head: ConversationHead,
  messages: readonly ChatMessage[],
): ConversationHead {
  const id = head.conversation_id;
  const chunks = writePieces(atomic, messages, (n) => chunkKey(id, n));
  for (let n = chunks; n < (head.chunks ?? 0); n++) atomic.delete(chunkKey(id, n));
  if (head.chunks === undefined) {
    for (let n = 0; n < head.count; n++) atomic.delete([...messagesPrefix(id), n]);
  }
  return { ...head, count: messages.length, chunks };
}

/** Adds to `atomic` the pieces of `value`'s JSON under `keyOf(n)`; returns how many. */
export function writePieces(
  atomic: Deno.AtomicOperation,
  value: unknown,
  keyOf: (n: number) => Deno.KvKey,
  options?: { expireIn?: number },
): number {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  const pieces = Math.ceil(bytes.length / CHUNK_BYTES);
  for (let n = 0; n < pieces; n++) {
    atomic.set(keyOf(n), bytes.subarray(n * CHUNK_BYTES, (n + 1) * CHUNK_BYTES), options);
  }
  return pieces;
}

/** The bytes of `count` pieces under `keyOf(n)`, joined; throws naming `what` if one is gone. */
export async function readPieces(
  kv: Deno.Kv,
  count: number,
  keyOf: (n: number) => Deno.KvKey,
  what: string,
): Promise<Uint8Array> {
  const pieces: Uint8Array[] = [];
  for (let n = 0; n < count; n++) {
    const piece = await kv.get<Uint8Array>(keyOf(n));
    if (!piece.value) throw new Error(`Cannot read ${what}: chunk ${n} is missing`);
    pieces.push(piece.value);
  }
  const whole = new Uint8Array(pieces.reduce((sum, p) => sum + p.length, 0));
  let offset = 0;
  for (const piece of pieces) {
    whole.set(piece, offset);
    offset += piece.length;
  }
  return whole;
}
