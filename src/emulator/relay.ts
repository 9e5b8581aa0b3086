/**
 * A plain byte relay: every connection accepted on `listen` is piped, both ways with half-close
 * kept, to a new connection to `to`. The emulator's crossings between the host and a VPC namespace
 * (loopback port ↔ unix socket ↔ VPC address) are all this.
 */
import { rmSync } from 'node:fs';
import { connect, createServer, type NetConnectOpts, type Server, type Socket } from 'node:net';

export interface Relay {
  server: Server;
  /** The TCP port listened on (the one picked for port 0); 0 for a unix socket. */
  port: number;
  close(): Promise<void>;
}

export async function startRelay(listen: { host: string; port: number } | { path: string }, to: NetConnectOpts): Promise<Relay> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (client) => {
    const upstream = connect({ ...to, allowHalfOpen: true });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.once('error', () => upstream.destroy());
    upstream.once('error', () => client.destroy());
  });
  if ('path' in listen) rmSync(listen.path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if ('path' in listen) server.listen(listen.path, () => resolve());
    else server.listen(listen.port, listen.host, () => resolve());
  });
  server.unref();
  const address = server.address();
  return {
    server,
    port: typeof address === 'object' && address ? (address).port : 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
