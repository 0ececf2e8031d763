/** What every route handler is built with. */
import type { Logger } from "../core/log.ts";
import type { Services } from "../core/services.ts";

/** The services a handler works on, and where it logs. */
export interface RouteDeps {
  services: Services;
  logger: Logger;
  /** Whether a response reaches the client while it is written (see `AppOptions`). */
  streamsResponses?: boolean;
}
