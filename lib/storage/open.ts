/** Opens the services of the configured backend kind. */
import type { Config } from "../core/config.ts";
import type { Services } from "../core/services.ts";
import { openAwsServices } from "./aws/open.ts";
import { openEmbeddedServices } from "./embedded/open.ts";

/** The store, queue and backends for `config.backend`. */
export async function openServices(config: Config): Promise<Services> {
  return config.backend === "embedded"
    ? await openEmbeddedServices(config)
    : openAwsServices(config);
}
