/** AWS clients that count the calls they make, by command: the bench's calls per job. */
import { type AwsClients, createAwsClients } from "../../lib/storage/aws/clients.ts";
import type { Config } from "../../lib/core/config.ts";

/** Calls made so far, by command name (`GetCommand`, `ReceiveMessageCommand`...). */
export type CallCounts = Map<string, number>;

/** Clients for `config` whose every command, retries aside, adds one to `calls`. */
export function countingClients(config: Config): { clients: AwsClients; calls: CallCounts } {
  const clients = createAwsClients(config);
  const calls: CallCounts = new Map();
  const count = (name: unknown) => {
    const key = String(name ?? "unknown");
    calls.set(key, (calls.get(key) ?? 0) + 1);
  };
  clients.dynamo.middlewareStack.add(
    (next, context) => (args) => {
      count(context.commandName);
      return next(args);
    },
    { step: "initialize", name: "benchCallCounter" },
  );
  clients.sqs.middlewareStack.add(
    (next, context) => (args) => {
      count(context.commandName);
      return next(args);
    },
    { step: "initialize", name: "benchCallCounter" },
  );
  return { clients, calls };
}

/** The calls made between two snapshots, by command. */
export function callsSince(now: CallCounts, before: CallCounts): CallCounts {
  const out: CallCounts = new Map();
  for (const [name, count] of now) {
    const made = count - (before.get(name) ?? 0);
    if (made > 0) out.set(name, made);
  }
  return out;
}
