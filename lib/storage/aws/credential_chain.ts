/**
 * The AWS SDK's default credential chain (the environment, a profile, SSO, a
 * process, the instance's or container's role), for a worker or a dev server
 * without keys in its configuration. The SDK is loaded on the first call
 * only, so a process with keys configured never loads it; the Lambda never
 * imports this module (its role's keys are in its environment).
 */
import type { CredentialSource } from "./json_protocol.ts";

/** The SDK's chain for `region`, refreshed as the SDK refreshes it. */
export async function sdkCredentialChain(region: string): Promise<CredentialSource> {
  const { SQSClient } = await import("@aws-sdk/client-sqs");
  const { credentials } = new SQSClient({ region }).config;
  return () => credentials();
}
