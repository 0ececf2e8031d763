/** Opens the services of the configured backend kind, and says what their storage lacks. */
import type { Config } from "../core/config.ts";
import type { Services } from "../core/services.ts";
import { openAwsServices } from "./aws/open.ts";
import { checkAwsSetup, type SetupCheckOptions } from "./aws/setup_check.ts";
import { openEmbeddedServices } from "./embedded/open.ts";

/** The store, queue and backends for `config.backend`. */
export async function openServices(config: Config): Promise<Services> {
  return config.backend === "embedded"
    ? await openEmbeddedServices(config)
    : openAwsServices(config);
}

/**
 * What the storage lacks that the configuration names (tables, queues, the
 * bucket), each as a sentence with the command that makes it; none for the
 * embedded backend, which makes its own. For `deno task dev` and `deno task
 * worker` at start-up.
 */
export function storageProblems(
  config: Config,
  options: SetupCheckOptions = {},
): Promise<string[]> {
  return config.backend === "aws" ? checkAwsSetup(config, options) : Promise.resolve([]);
}
