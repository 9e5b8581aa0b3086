/**
 * The booting machines for tests and benchmarks: a MachineSupervisor following a moto on loopback,
 * with the test bed's kube binaries and cloud-init, and CAPFLOW_TEST_LOG=1 printing its lines.
 */
import { MachineSupervisor, type SupervisorOptions } from '../../src/emulator/supervisor.js';
import { TEST_REGION } from './moto.js';
import { requireTool, testbedBinDir, testbedVersions } from './tools.js';

export function startTestSupervisor(motoEndpoint: string, overrides: Partial<SupervisorOptions> = {}): Promise<MachineSupervisor> {
  return MachineSupervisor.start({
    endpoint: motoEndpoint,
    region: TEST_REGION,
    kubeBinDir: testbedBinDir(),
    cloudInitBinary: requireTool('cloud-init'),
    kubeletVersion: testbedVersions().KUBERNETES_VERSION!,
    pollMs: 250,
    keepFiles: process.env.CAPFLOW_KEEP_MACHINES === '1',
    log: (line) => void (process.env.CAPFLOW_TEST_LOG ? console.log(line) : undefined),
    ...overrides,
  });
}

/** Polls `probe` until it gives a value (not undefined); its errors are retried and the last one reported. */
export async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? ` (last: ${(last as Error).message})` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
