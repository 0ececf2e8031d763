/** AWS connections that count the calls they make, by operation: the bench's calls per job. */
import { type AwsConnections, connectAws } from "../../lib/storage/aws/connections.ts";
import type { Config } from "../../lib/core/config.ts";

/** Calls made so far, by operation name (`GetItem`, `ReceiveMessage`...). */
export type CallCounts = Map<string, number>;

/** Connections for `config` whose every DynamoDB and SQS call, retries aside, adds one to `calls`. */
export function countingConnections(
  config: Config,
): { connections: AwsConnections; calls: CallCounts } {
  const calls: CallCounts = new Map();
  const connections = connectAws(config, {
    onCall: (operation) => calls.set(operation, (calls.get(operation) ?? 0) + 1),
  });
  return { connections, calls };
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
