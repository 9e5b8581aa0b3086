/**
 * The local AWS emulator of the embedded default: moto_server on a free
 * loopback port, with throwaway credentials, so `capflow demo` provisions
 * for real without an AWS account and without any traffic leaving the host.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { InputError, TransientError } from '../core/errors.js';

export interface LocalAws {
  endpoint: string;
  /** Environment for the executors: endpoint, dummy credentials, no instance metadata lookups. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

export async function startLocalAws(options: { region?: string; timeoutMs?: number } = {}): Promise<LocalAws> {
  const port = await freeLoopbackPort();
  const endpoint = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  const spawnError = new Promise<never>((_, reject) =>
    child.once('error', (err) =>
      reject(
        (err as NodeJS.ErrnoException).code === 'ENOENT'
          ? new InputError('LOCAL_AWS_MISSING', 'the local AWS emulator (moto_server) is not installed', { hint: "pip install 'moto[server]'" })
          : err,
      ),
    ),
  );
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      child.kill('SIGTERM');
    }
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 3000))]);
  };
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  const ready = (async () => {
    for (;;) {
      try {
        const res = await fetch(`${endpoint}/moto-api/`);
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      if (child.exitCode !== null) throw new TransientError('LOCAL_AWS_FAILED', `moto_server exited: ${stderr.trim()}`);
      if (Date.now() > deadline) throw new TransientError('LOCAL_AWS_TIMEOUT', `moto_server did not answer on ${endpoint}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  })();
  try {
    await Promise.race([ready, spawnError]);
  } catch (err) {
    await stop();
    throw err;
  }
  const region = options.region ?? 'us-east-1';
  return {
    endpoint,
    env: {
      AWS_ENDPOINT_URL: endpoint,
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
      AWS_REGION: region,
      AWS_DEFAULT_REGION: region,
      AWS_EC2_METADATA_DISABLED: 'true',
    },
    stop,
  };
}
