// A TCP relay on 127.0.0.1 in front of a server (e.g. envtest's kube-apiserver; TLS passes through
// untouched) that can cut every connection and refuse new ones: a network partition for one client.
//
//   const relay = await startRelay(port);   // point a client at 127.0.0.1:relay.port
//   relay.cut(true);  ...  relay.cut(false);
//   await relay.close();

import { connect, createServer, type Socket } from 'node:net';

export interface Relay {
  port: number;
  /** true: drop every open connection and refuse new ones; false: relay again. */
  cut(refuse: boolean): void;
  close(): Promise<void>;
}

export async function startRelay(targetPort: number): Promise<Relay> {
  const sockets = new Set<Socket>();
  let refusing = false;
  const server = createServer((client) => {
    if (refusing) return void client.destroy();
    const upstream = connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined); // a cut connection is the point
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    cut(refuse: boolean) {
      refusing = refuse;
      if (refuse) for (const s of sockets) s.destroy();
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
