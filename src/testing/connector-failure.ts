/**
 * Test support: the ConnectorError a connector call fails with (the test fails if it succeeds or throws another);
 * with `messages`, its message is kept there too, for a last check that no message holds a secret.
 */
import { expect } from "vitest";
import { ConnectorError } from "../modules/connectors/connector.types.js";

export async function connectorFailure(pending: Promise<unknown>, messages?: string[]): Promise<ConnectorError> {
  const error = await pending.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(ConnectorError);
  messages?.push((error as ConnectorError).message);
  return error as ConnectorError;
}
