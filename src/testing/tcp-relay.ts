/**
 * Test support: a TCP relay on 127.0.0.1 to a server, whose connections can be made to go silent (`freeze`:
 * nothing relayed either way, nothing closed — a paused server or a cut network, as a client sees it), while
 * new connections are relayed as usual.
 */
import { createServer, Socket, type AddressInfo } from "node:net";

export interface TcpRelay {
  port: number;
  /** The relayed connections still open (client side). */
  open(): number;
  /** Stops relaying on every connection open now; they stay open until their client closes them. */
  freeze(): void;
  close(): Promise<void>;
}

export async function startTcpRelay(to: { host: string; port: number }): Promise<TcpRelay> {
  const pairs = new Set<{ client: Socket; upstream: Socket }>();
  const server = createServer((client) => {
    const upstream = new Socket();
    const pair = { client, upstream };
    pairs.add(pair);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    upstream.connect(to.port, to.host, () => {
      client.pipe(upstream);
      upstream.pipe(client);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    open: () => pairs.size,
    freeze() {
      for (const { client, upstream } of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        // Read and drop what the client sends, so that its FIN (when it gives up) is seen.
        client.removeAllListeners("data");
        client.on("data", () => undefined);
        client.resume();
        upstream.pause();
      }
    },
    async close() {
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
