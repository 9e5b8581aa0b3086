/**
 * moto_server, the local stand-in for AWS (EC2, ELBv2, AutoScaling, EKS, IAM, STS), for tests.
 *
 *   const moto = await startMoto();
 *   const ec2 = new EC2Client(clientConfig(moto.endpoint));
 *   ...
 *   await moto.reset();   // between tests
 *   await moto.stop();    // after all
 *
 * moto listens on 127.0.0.1 only. All of its services share one endpoint: moto picks the service from
 * the SigV4 credential scope in the Authorization header, so every SDK client can use the same URL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort, LOOPBACK } from './ports.js';

export interface Moto {
  /** e.g. http://127.0.0.1:45123 */
  endpoint: string;
  port: number;
  /** Forget every resource (POST /moto-api/reset). */
  reset(): Promise<void>;
  /** Kill the server (idempotent). */
  stop(): Promise<void>;
}

export const TEST_REGION = 'us-east-1';

const INSTALL_HINT =
  "moto_server was not found on PATH: install it with `pip install 'moto[server]'` (or run `bash testbed/install.sh`)";

/** Every live child we started, killed on process exit so no moto outlives the test run. */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of live) killGroup(child, 'SIGKILL');
  });
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal); // the whole group: the pyenv shim execs, but be safe
  } catch {
    try {
      child.kill(signal);
    } catch {
      /* already gone */
    }
  }
}

export interface StartMotoOptions {
  timeoutMs?: number;
  /**
   * Load AWS's managed IAM policies (MOTO_IAM_LOAD_MANAGED_POLICIES), default false. moto builds an
   * IAM backend for the account on every account's first request, and reset() rebuilds it before
   * throwing it away: with the managed policies that costs about 1 s at each reset and again at the
   * first call after it, without them under 0.1 s. Nothing capflow does attaches an AWS managed
   * policy; a suite that does (IAM policy tests) passes true.
   */
  iamManagedPolicies?: boolean;
}

/** Start moto_server on a free loopback port and wait until it answers. */
export async function startMoto(opts: StartMotoOptions = {}): Promise<Moto> {
  const port = await freePort();
  const endpoint = `http://${LOOPBACK}:${port}`;
  const child = spawn('moto_server', ['-H', LOOPBACK, '-p', String(port)], {
    env: { ...process.env, MOTO_IAM_LOAD_MANAGED_POLICIES: String(opts.iamManagedPolicies ?? false) },
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true, // own process group, so stop() takes everything it started
  });
  installExitHook();
  live.add(child);

  // Keep the last bit of stderr for error messages; moto logs each request there.
  let stderrTail = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderrTail = (stderrTail + chunk).slice(-4000);
  });

  let exited: Error | undefined;
  const exitedPromise = new Promise<void>((resolve) => {
    child.once('error', (err: NodeJS.ErrnoException) => {
      exited = err.code === 'ENOENT' ? new Error(INSTALL_HINT) : err;
      live.delete(child);
      resolve();
    });
    child.once('exit', (code, signal) => {
      exited ??= new Error(`moto_server exited (code ${code}, signal ${signal}): ${stderrTail}`);
      live.delete(child);
      resolve();
    });
  });

  // Poll the moto API until it answers.
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  for (;;) {
    if (exited) throw exited;
    try {
      const res = await fetch(`${endpoint}/moto-api/`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.ok) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) {
      killGroup(child, 'SIGKILL');
      throw new Error(`moto_server did not answer on ${endpoint} in time: ${stderrTail}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  return {
    endpoint,
    port,
    async reset() {
      const res = await fetch(`${endpoint}/moto-api/reset`, { method: 'POST' });
      await res.arrayBuffer();
      if (!res.ok) throw new Error(`moto reset failed: HTTP ${res.status}`);
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null || exited) return;
      killGroup(child, 'SIGTERM');
      const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 3000);
      await exitedPromise;
      clearTimeout(timer);
    },
  };
}

/** Environment for a child process (an executor) that should talk to moto (or a proxy in front). */
export function awsTestEnv(endpoint: string): Record<string, string> {
  return {
    AWS_ENDPOINT_URL: endpoint,
    AWS_ACCESS_KEY_ID: 'testing',
    AWS_SECRET_ACCESS_KEY: 'testing',
    AWS_REGION: TEST_REGION,
    AWS_DEFAULT_REGION: TEST_REGION,
    AWS_EC2_METADATA_DISABLED: 'true',
  };
}

/**
 * Config for an AWS SDK v3 client in a test: static test credentials, us-east-1, the given endpoint.
 * Pass `maxAttempts: 1` to turn the SDK's own retries off (so throttling answers reach the test).
 */
export function clientConfig(
  endpoint: string,
  extra: { maxAttempts?: number } = {},
): {
  endpoint: string;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  maxAttempts?: number;
} {
  return {
    endpoint,
    region: TEST_REGION,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    ...(extra.maxAttempts !== undefined ? { maxAttempts: extra.maxAttempts } : {}),
  };
}
