/** What the front door's middleware records on each request, for the handlers after it. */
export type GatewayEnv = {
  Variables: {
    requestId: string;
    /** The caller's API key digest, when keys are configured (see lib/owners.ts). */
    owner?: string;
  };
};
