/**
 * A lean HTTP/1.1 client for benchmarks that run their requesters in the server's own process: keep-alive
 * sockets taken from a pool (one per request in flight), raw request bytes, and the response read just enough
 * (status line, Content-Length, the JSON body). fetch (undici) cost this process more per call than the server
 * spent answering it (webstreams, abort signals, header objects), so the figures measured the client; a client
 * on another machine costs the server nothing. Responses must carry Content-Length (Fastify's JSON answers do).
 */
import net from "node:net";

export interface RawReply {
  status: number;
  body: Record<string, unknown>;
}

interface Pending {
  resolve(reply: RawReply): void;
  reject(error: Error): void;
}

class Connection {
  private buffered: Buffer = Buffer.alloc(0);
  private pending: Pending | undefined;
  readonly socket: net.Socket;

  constructor(port: number, host: string) {
    this.socket = net.connect({ port, host, noDelay: true });
    this.socket.on("data", (chunk: Buffer) => this.onData(chunk));
    this.socket.on("error", (error) => this.fail(error));
    this.socket.on("close", () => this.fail(new Error("the server closed the connection")));
  }

  send(text: string): Promise<RawReply> {
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.socket.write(text);
    });
  }

  private fail(error: Error) {
    const pending = this.pending;
    this.pending = undefined;
    pending?.reject(error);
  }

  private onData(chunk: Buffer) {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const end = this.buffered.indexOf("\r\n\r\n");
    if (end === -1) return;
    const head = this.buffered.toString("latin1", 0, end);
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (!length) return this.fail(new Error(`a response without Content-Length: ${head.slice(0, 200)}`));
    const bodyEnd = end + 4 + Number(length[1]);
    if (this.buffered.length < bodyEnd) return;
    const status = Number(head.slice(9, 12));
    const body = JSON.parse(this.buffered.toString("utf8", end + 4, bodyEnd)) as Record<string, unknown>;
    this.buffered = this.buffered.subarray(bodyEnd);
    const pending = this.pending;
    this.pending = undefined;
    pending?.resolve({ status, body });
  }
}

/** A client of the server at `port`; `close` ends its sockets. */
export function rawHttpClient(port: number, host = "127.0.0.1") {
  const idle: Connection[] = [];
  const all = new Set<Connection>();
  return {
    async call(method: string, url: string, headers: Record<string, string>, payload?: object): Promise<RawReply> {
      let connection = idle.pop();
      if (!connection) {
        connection = new Connection(port, host);
        all.add(connection);
      }
      const body = payload === undefined ? "" : JSON.stringify(payload);
      let text = `${method} ${url} HTTP/1.1\r\nhost: ${host}:${port}\r\n`;
      for (const name in headers) text += `${name}: ${headers[name]}\r\n`;
      if (payload !== undefined)
        text += `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n`;
      const reply = await connection.send(`${text}\r\n${body}`);
      idle.push(connection);
      return reply;
    },
    close() {
      for (const connection of all) connection.socket.destroy();
      all.clear();
      idle.length = 0;
    },
  };
}
