/** Ports for test servers (sshd, slapd, PostgreSQL, Stint nodes) on loopback. */
import { createServer } from "node:net";

/** A TCP port on 127.0.0.1 nobody listens on right now (for a test server, or for "closed port" tests). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
