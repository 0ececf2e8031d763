/**
 * DynamoDB items as plain values, over the JSON protocol: the calls the store
 * makes, with the inputs and outputs of the SDK's document client (its types
 * only; none of its code is loaded).
 */
import type {
  BatchGetCommandInput,
  BatchGetCommandOutput,
  DeleteCommandInput,
  GetCommandInput,
  GetCommandOutput,
  PutCommandInput,
  PutCommandOutput,
  QueryCommandInput,
  QueryCommandOutput,
  TransactWriteCommandInput,
  UpdateCommandInput,
  UpdateCommandOutput,
} from "@aws-sdk/lib-dynamodb";
import {
  type AttributeMap,
  fromAttributeMap,
  type PlainMap,
  toAttributeMap,
} from "./attribute_values.ts";
import { AwsServiceError, type JsonService } from "./json_protocol.ts";

/** An output without the SDK's response metadata, which this transport has no use for. */
type Answer<T> = Omit<T, "$metadata">;

/** The one transaction item kind's fields that hold values. */
type TransactItem = NonNullable<TransactWriteCommandInput["TransactItems"]>[number];

/** The store's DynamoDB calls, on plain values. */
export class DynamoDocuments {
  #db: JsonService;

  constructor(db: JsonService) {
    this.#db = db;
  }

  async get(input: GetCommandInput): Promise<Answer<GetCommandOutput>> {
    const out = await this.#db.call<{ Item?: AttributeMap }>("GetItem", {
      ...input,
      Key: toAttributeMap(input.Key),
    });
    return { Item: out.Item && fromAttributeMap(out.Item) };
  }

  async put(input: PutCommandInput): Promise<Answer<PutCommandOutput>> {
    const out = await this.#db.call<{ Attributes?: AttributeMap }>("PutItem", {
      ...input,
      Item: toAttributeMap(input.Item),
      ...values(input.ExpressionAttributeValues),
    });
    return { Attributes: out.Attributes && fromAttributeMap(out.Attributes) };
  }

  async update(input: UpdateCommandInput): Promise<Answer<UpdateCommandOutput>> {
    const out = await this.#db.call<{ Attributes?: AttributeMap }>("UpdateItem", {
      ...input,
      Key: toAttributeMap(input.Key),
      ...values(input.ExpressionAttributeValues),
    });
    return { Attributes: out.Attributes && fromAttributeMap(out.Attributes) };
  }

  async delete(input: DeleteCommandInput): Promise<void> {
    await this.#db.call("DeleteItem", {
      ...input,
      Key: toAttributeMap(input.Key),
      ...values(input.ExpressionAttributeValues),
    });
  }

  async query(input: QueryCommandInput): Promise<Answer<QueryCommandOutput>> {
    const out = await this.#db.call<PagedItems>("Query", {
      ...input,
      ...values(input.ExpressionAttributeValues),
      ExclusiveStartKey: input.ExclusiveStartKey && toAttributeMap(input.ExclusiveStartKey),
    });
    return pageOf(out);
  }

  async batchGet(input: BatchGetCommandInput): Promise<Answer<BatchGetCommandOutput>> {
    const requests = Object.fromEntries(
      Object.entries(input.RequestItems ?? {}).map((
        [table, request],
      ) => [table, { ...request, Keys: request.Keys?.map(toAttributeMap) }]),
    );
    const out = await this.#db.call<{
      Responses?: Record<string, AttributeMap[]>;
      UnprocessedKeys?: Record<string, { Keys?: AttributeMap[] }>;
    }>("BatchGetItem", { ...input, RequestItems: requests });
    return {
      Responses: out.Responses &&
        Object.fromEntries(
          Object.entries(out.Responses).map(([table, items]) => [
            table,
            items.map(fromAttributeMap),
          ]),
        ),
      UnprocessedKeys: out.UnprocessedKeys &&
        Object.fromEntries(
          Object.entries(out.UnprocessedKeys).map(([table, request]) => [
            table,
            { ...request, Keys: request.Keys?.map(fromAttributeMap) },
          ]),
        ),
    };
  }

  /**
   * Writes all of `TransactItems` or none. A cancelled transaction throws
   * `TransactionCanceledException` with its `CancellationReasons` in `details`,
   * each reason's `Item` as a plain value. Every attempt carries the same
   * `ClientRequestToken`, as the SDK's do: an attempt after one that DynamoDB
   * applied but whose answer was lost then succeeds instead of failing its
   * conditions (for ten minutes).
   */
  async transactWrite(input: TransactWriteCommandInput): Promise<void> {
    try {
      await this.#db.call("TransactWriteItems", {
        ...input,
        ClientRequestToken: input.ClientRequestToken ?? crypto.randomUUID(),
        TransactItems: input.TransactItems?.map(transactItem),
      });
    } catch (err) {
      const reasons = err instanceof AwsServiceError ? err.details.CancellationReasons : undefined;
      if (err instanceof AwsServiceError && Array.isArray(reasons)) {
        err.details.CancellationReasons = reasons.map((reason) =>
          reason?.Item ? { ...reason, Item: fromAttributeMap(reason.Item) } : reason
        );
      }
      throw err;
    }
  }
}

/** A page of `Query`, as sent. */
interface PagedItems {
  Items?: AttributeMap[];
  LastEvaluatedKey?: AttributeMap;
  Count?: number;
  ScannedCount?: number;
}

function pageOf(out: PagedItems) {
  return {
    Items: out.Items?.map(fromAttributeMap),
    LastEvaluatedKey: out.LastEvaluatedKey && fromAttributeMap(out.LastEvaluatedKey),
    Count: out.Count,
    ScannedCount: out.ScannedCount,
  };
}

/** `ExpressionAttributeValues` as sent, when there are any. */
function values(map: PlainMap | undefined): { ExpressionAttributeValues?: AttributeMap } {
  return map ? { ExpressionAttributeValues: toAttributeMap(map) } : {};
}

/** A transaction item with its values converted: a Put's item, the others' key. */
function transactItem(item: TransactItem): object {
  for (const kind of ["Put", "Update", "Delete", "ConditionCheck"] as const) {
    const operation = item[kind];
    if (!operation) continue;
    return {
      [kind]: {
        ...operation,
        ...("Item" in operation
          ? { Item: toAttributeMap(operation.Item) }
          : { Key: toAttributeMap(operation.Key) }),
        ...values(operation.ExpressionAttributeValues),
      },
    };
  }
  throw new TypeError("A transaction item must be a Put, Update, Delete or ConditionCheck");
}
