/** Test support: the ConnectorError a connector call fails with (the test fails if it succeeds or throws another). */
import { expect } from "vitest";
import { ConnectorError } from "../modules/connectors/connector.types.js";

export async function connectorFailure(pending: Promise<unknown>): Promise<ConnectorError> {
  const error = await pending.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(ConnectorError);
  return error as ConnectorError;
}
