/** A gateway whose stand-ins serve embedding models, for the embeddings tests. */
import type { TestGatewayOptions } from "./gateway.ts";

/** The stand-ins' models: a chat and an embedding model on each. */
export const EMBEDDING_MODELS: TestGatewayOptions = {
  env: {
    VLLM_MODELS: "test-text-model,test-embed-vllm=embedding",
    VISIBILITY_TIMEOUT_S: "3",
  },
  vllmModels: [
    { id: "test-text-model" },
    { id: "test-embed-vllm", capabilities: ["embedding"], dimensions: 256 },
  ],
  ollamaModels: [
    { id: "test-vision-model", capabilities: ["completion", "vision"] },
    { id: "nomic-embed-text:latest", capabilities: ["embedding"], dimensions: 8 },
  ],
};
