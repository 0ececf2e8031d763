/** AWS clients that count the calls they make, by operation: the bench's calls per job. */
import { type AwsClients, createAwsClients } from "../../lib/storage/aws/clients.ts";
import type { Config } from "../../lib/core/config.ts";

/** Calls made so far, by operation name (`GetItem`, `ReceiveMessage`...). */
export type CallCounts = Map<string, number>;

/** The gateway's clients for `config`, whose every call, retries aside, adds one to `calls`. */
export function countingClients(config: Config): { clients: AwsClients; calls: CallCounts } {
  const calls: CallCounts = new Map();
  const clients = createAwsClients(config, {
    onCall: (operation) => calls.set(operation, (calls.get(operation) ?? 0) + 1),
  });
  return { clients, calls };
}

/** The calls made between two snapshots, by operation. */
export function callsSince(now: CallCounts, before: CallCounts): CallCounts {
  const out: CallCounts = new Map();
  for (const [name, count] of now) {
    const made = count - (before.get(name) ?? 0);
    if (made > 0) out.set(name, made);
  }
  return out;
}
