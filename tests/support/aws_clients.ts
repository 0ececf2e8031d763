/** The gateway's own AWS clients (lib/storage/aws/clients.ts) for an emulator or a loopback stand-in. */
import { loadConfig } from "../../lib/core/config.ts";
import { type AwsClients, createAwsClients } from "../../lib/storage/aws/clients.ts";

/** Keys that sign calls. */
export interface TestKeys {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** Keys that sign a test's calls; the secret never shows in what the tests see. */
export const TEST_KEYS: TestKeys = {
  accessKeyId: "AKIDEXAMPLE",
  secretAccessKey: "a-secret-never-shown",
};

/** Options for {@linkcode clientsAt}. */
export interface ClientsAtOptions {
  keys?: TestKeys;
  /** Default us-east-1, Moto's. */
  region?: string;
  /** Told of every call, as the bench counts them. */
  onCall?: (operation: string) => void;
}

/** Clients for every service at `url`, configured as the gateway configures them from its environment. */
export function clientsAt(url: string, options: ClientsAtOptions = {}): AwsClients {
  const { keys = TEST_KEYS, region = "us-east-1", onCall } = options;
  return createAwsClients(
    loadConfig({
      BACKEND: "aws",
      AWS_REGION: region,
      AWS_ENDPOINT_URL: url,
      AWS_ACCESS_KEY_ID: keys.accessKeyId,
      AWS_SECRET_ACCESS_KEY: keys.secretAccessKey,
      ...(keys.sessionToken ? { AWS_SESSION_TOKEN: keys.sessionToken } : {}),
    }),
    { onCall },
  );
}
