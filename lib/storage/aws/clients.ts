/**
 * The AWS SDK's clients for DynamoDB, SQS and S3, built from the
 * configuration in this one place: the store, the queue and the blobs of the
 * front door and the worker, `deno task setup`, the tests and the bench all
 * use them. Creating them does no I/O; each process makes one set and keeps it.
 */
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { SQSClient } from "@aws-sdk/client-sqs";
import type { S3Client } from "@aws-sdk/client-s3";
import type { InitializeMiddleware, MetadataBearer } from "@smithy/types";
import type { Config } from "../../core/config.ts";

/** Attempts per call, the first included, for what the SDK's standard retry mode retries. */
export const MAX_ATTEMPTS = 3;
/** How long opening a connection may take. */
export const CONNECTION_TIMEOUT_MS = 5_000;
/**
 * How long one attempt may take, by service. SQS's outlasts its longest long
 * poll (20 s) by 15 s; S3's leaves time for a blob of up to 8 MiB.
 */
export const REQUEST_TIMEOUT_MS = { dynamodb: 15_000, sqs: 35_000, s3: 35_000 } as const;

/** One client per service. */
export interface AwsClients {
  /** The DynamoDB client under {@linkcode documents}, for setting tables up. */
  dynamo: DynamoDBClient;
  /** DynamoDB items as plain values (`removeUndefinedValues`). */
  documents: DynamoDBDocumentClient;
  sqs: SQSClient;
  /**
   * The S3 client, loaded and built at its first use, then kept: most jobs
   * hold no blob, and loading it costs a worker some 4 MiB.
   */
  s3(): Promise<S3Client>;
  /** Closes the clients' sockets. */
  destroy(): void;
}

/** Options for {@linkcode createAwsClients}. */
export interface AwsClientOptions {
  /** Told of every call by its operation's name (`GetItem`, `ReceiveMessage`), retries aside: the bench counts them. */
  onCall?: (operation: string) => void;
}

/**
 * The settings every client gets. Credentials are the configured keys
 * (`AWS_ACCESS_KEY_ID`, as Lambda sets them for its role); without them the
 * SDK's default chain finds them (a profile, SSO, the instance's role).
 */
function settings(config: Config, service: keyof typeof REQUEST_TIMEOUT_MS) {
  return {
    region: config.awsRegion,
    endpoint: config.awsEndpoints[service],
    // A copy: the SDK writes bookkeeping onto the credentials object, and the config is frozen.
    credentials: config.awsCredentials && { ...config.awsCredentials },
    retryMode: "standard",
    maxAttempts: MAX_ATTEMPTS,
    requestHandler: {
      connectionTimeout: CONNECTION_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS[service],
      // Without it the SDK only warns when an attempt outlasts its time.
      throwOnRequestTimeout: true,
    },
  };
}

/** Creates the clients for the configured region, endpoints and credentials. */
export function createAwsClients(config: Config, options: AwsClientOptions = {}): AwsClients {
  const dynamo = new DynamoDBClient(settings(config, "dynamodb"));
  const documents = DynamoDBDocumentClient.from(dynamo, {
    marshallOptions: { removeUndefinedValues: true },
  });
  const sqs = new SQSClient(settings(config, "sqs"));
  let s3: Promise<S3Client> | undefined;
  const loadS3 = async () => {
    const { S3Client } = await import("./s3_calls.ts");
    const client = new S3Client({
      ...settings(config, "s3"),
      // An emulator answers at one address, not at a host name per bucket.
      forcePathStyle: config.awsEndpoints.s3 !== undefined,
    });
    client.middlewareStack.add(callObserver(options.onCall), OBSERVER);
    return client;
  };
  dynamo.middlewareStack.add(callObserver(options.onCall), OBSERVER);
  sqs.middlewareStack.add(callObserver(options.onCall), OBSERVER);
  return {
    dynamo,
    documents,
    sqs,
    s3: () =>
      s3 ??= loadS3().catch((err) => {
        s3 = undefined; // loaded again next time
        throw err;
      }),
    destroy() {
      documents.destroy();
      dynamo.destroy();
      sqs.destroy();
      s3?.then((client) => client.destroy(), () => {});
    },
  };
}

/** Where {@linkcode callObserver} goes: first, once around each call and its retries. */
const OBSERVER = { step: "initialize", name: "gatewayCallObserver" } as const;

/**
 * Tells `onCall` of each call, and cuts every error's message to its first
 * paragraph before anyone logs it.
 */
function callObserver<Input extends object, Output extends MetadataBearer>(
  onCall: ((operation: string) => void) | undefined,
): InitializeMiddleware<Input, Output> {
  return (next, context) => async (args) => {
    onCall?.(context.commandName?.replace(/Command$/, "") ?? "unknown");
    try {
      return await next(args);
    } catch (err) {
      if (err instanceof Error) err.message = firstParagraph(err.message);
      throw err;
    }
  };
}

/**
 * A message's first paragraph: AWS's message for a refused signature goes on
 * with the canonical request it expected, which holds the session token, and
 * error messages are logged.
 */
function firstParagraph(message: string): string {
  return message.split(/\r?\n\s*\r?\n/)[0].trim();
}
