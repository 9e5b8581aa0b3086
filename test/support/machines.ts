/**
 * The booting machines for tests and benchmarks: a MachineSupervisor following a moto on loopback,
 * with the test bed's kube binaries (those of its previous release too, for instances of that
 * release's AMIs, when built) and cloud-init, and CAPFLOW_TEST_LOG=1 printing its lines.
 */
import { DescribeImagesCommand, RegisterImageCommand, type EC2Client } from '@aws-sdk/client-ec2';
import { MachineSupervisor, type SupervisorOptions } from '../../src/emulator/supervisor.js';
import { TEST_REGION } from './moto.js';
import { requirePreviousKubeBinDir, requireTool, testbedBinDir, testbedVersions } from './tools.js';

/** The previous release's bin dir, when install.sh built it (tests that need it call requirePreviousKubeBinDir). */
function previousKubeImage(): Record<string, string> {
  try {
    const { version, dir } = requirePreviousKubeBinDir();
    return { [version]: dir };
  } catch {
    return {};
  }
}

export function startTestSupervisor(motoEndpoint: string, overrides: Partial<SupervisorOptions> = {}): Promise<MachineSupervisor> {
  return MachineSupervisor.start({
    endpoint: motoEndpoint,
    region: TEST_REGION,
    kubeBinDir: testbedBinDir(),
    cloudInitBinary: requireTool('cloud-init'),
    kubeletVersion: testbedVersions().KUBERNETES_VERSION!,
    kubeImages: previousKubeImage(),
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

/**
 * An AMI named as the AWS provider's image of this Kubernetes version (capa-ami-ubuntu-24.04-v1.34.3-...,
 * src/cli/local-aws.ts capaImageList), owned by the test account: its instances boot with that
 * version's binaries. Its id; the one already registered under that name, if any (names are unique).
 */
export async function registerCapaImage(ec2: EC2Client, version: string): Promise<string> {
  const name = `capa-ami-ubuntu-24.04-v${version.replace(/^v/, '')}-1732924800`;
  const known = (await ec2.send(new DescribeImagesCommand({ Owners: ['self'], Filters: [{ Name: 'name', Values: [name] }] }))).Images?.[0]?.ImageId;
  return known ?? (await ec2.send(new RegisterImageCommand({ Name: name, RootDeviceName: '/dev/sda1', Architecture: 'x86_64' }))).ImageId!;
}
