/** What the front door's middleware records on each request, for the handlers after it. */
import type { KeySpec } from "../core/key_config.ts";

/** The variables of each request's context. */
export type GatewayEnv = {
  Variables: {
    requestId: string;
    /** The caller's API key digest, when keys are configured (see lib/owners.ts). */
    owner?: string;
    /** The caller's key as configured: its name and limits, never the key. */
    key?: KeySpec;
  };
};
