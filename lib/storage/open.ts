/** Opens the services of the configured backend kind. */
import type { Config } from "../core/config.ts";
import type { Services } from "../core/services.ts";
import { openAwsServices } from "./aws/open.ts";
import { connectAws } from "./aws/connections.ts";
import { sdkCredentialChain } from "./aws/credential_chain.ts";
import { openEmbeddedServices } from "./embedded/open.ts";

/**
 * The store, queue and backends for `config.backend`. On AWS without keys
 * configured, credentials come from the SDK's chain (a profile, SSO), as the
 * README's set-up for the Mac allows.
 */
export async function openServices(config: Config): Promise<Services> {
  return config.backend === "embedded"
    ? await openEmbeddedServices(config)
    : openAwsServices(config, connectAws(config, { credentialChain: sdkCredentialChain }));
}
