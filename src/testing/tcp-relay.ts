/**
 * Test support: a TCP relay on 127.0.0.1 to a server, whose connections can be made to go silent (`freeze`:
 * nothing relayed either way, nothing closed — a paused server or a cut network, as a client sees it), while
 * new connections are relayed as usual. `switchableRelay`: one that can go down (connections refused, open ones
 * cut) and come back on its port, as a target's outage looks to a client.
 */
import { createServer, Socket, type AddressInfo, type Server } from "node:net";

type Destination = { host: string; port: number };

export interface TcpRelay {
  port: number;
  /** The relayed connections still open (client side). */
  open(): number;
  /** Stops relaying on every connection open now; they stay open until their client closes them. */
  freeze(): void;
  close(): Promise<void>;
}

/** Relays `client` to `to` both ways; when either side closes or fails, both are destroyed and `ended` is called. */
function relay(client: Socket, to: Destination, ended: (upstream: Socket) => void): Socket {
  const upstream = new Socket();
  const drop = () => {
    client.destroy();
    upstream.destroy();
    ended(upstream);
  };
  client.on("error", drop).on("close", drop);
  upstream.on("error", drop).on("close", drop);
  upstream.connect(to.port, to.host, () => {
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return upstream;
}

export async function startTcpRelay(to: Destination): Promise<TcpRelay> {
  const pairs = new Set<{ client: Socket; upstream: Socket }>();
  const server = createServer((client) => {
    const pair = { client, upstream: relay(client, to, () => pairs.delete(pair)) };
    pairs.add(pair);
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

/** A relay on 127.0.0.1 to `to` that can go down and come back up on the same port. */
export function switchableRelay(to: Destination) {
  let server: Server | undefined;
  const sockets = new Set<Socket>();
  let port = 0;
  return {
    /** Listens (on the port of the first time, after that); resolves with the port. */
    up: () =>
      new Promise<number>((resolve, reject) => {
        const listening = createServer((client) => {
          const upstream = relay(client, to, () => {
            sockets.delete(client);
            sockets.delete(upstream);
          });
          sockets.add(client).add(upstream);
        });
        server = listening;
        listening.once("error", reject);
        listening.listen(port, "127.0.0.1", () => {
          port = (listening.address() as AddressInfo).port;
          resolve(port);
        });
      }),
    /** Down: the listener closed (connections refused) and every open connection cut. */
    down: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        sockets.clear();
        if (!server) return resolve();
        server.close(() => resolve());
        server = undefined;
      }),
  };
}
