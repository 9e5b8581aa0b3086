/**
 * The local AWS emulator of the embedded default: moto_server on a free
 * loopback port, with throwaway credentials, so `capflow demo` provisions
 * for real without an AWS account and without any traffic leaving the host.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateInstanceProfileCommand, IAMClient } from '@aws-sdk/client-iam';
import { DEFAULT_IMAGE_LOOKUP_BASE_OS, DEFAULT_IMAGE_LOOKUP_ORG } from '../aws/images.js';
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

/**
 * The AWS provider's public machine images for these Kubernetes versions (Ubuntu 24.04, amd64 and
 * arm64), as moto's image list (MOTO_AMIS_PATH): the emulator then finds what CAPA's image lookup
 * finds in a real region, owner and names alike.
 */
export function capaImageList(kubernetesVersions: readonly string[]): object[] {
  return kubernetesVersions.flatMap((v, i) =>
    (['x86_64', 'arm64'] as const).map((architecture, j) => ({
      ami_id: `ami-0ca9f10${String(i).padStart(2, '0')}${j}${createHash('sha256').update(`${v}/${architecture}`).digest('hex').slice(0, 7)}`,
      name: `capa-ami-${DEFAULT_IMAGE_LOOKUP_BASE_OS}-v${v.replace(/^v/, '')}-1732924800`,
      description: `Cluster API AWS provider image: Kubernetes ${v} on Ubuntu 24.04 (emulated)`,
      owner_id: DEFAULT_IMAGE_LOOKUP_ORG,
      public: true,
      state: 'available',
      architecture,
      virtualization_type: 'hvm',
      hypervisor: 'xen',
      image_type: 'machine',
      root_device_type: 'ebs',
      root_device_name: '/dev/sda1',
      sriov: 'simple',
      creation_date: '2026-11-30T00:00:00.000Z',
    })),
  );
}

/** The instance profiles `clusterawsadm bootstrap iam create-cloudformation-stack` makes in an account. */
export const CAPA_INSTANCE_PROFILES = ['control-plane.cluster-api-provider-aws.sigs.k8s.io', 'nodes.cluster-api-provider-aws.sigs.k8s.io', 'controllers.cluster-api-provider-aws.sigs.k8s.io'];

export interface LocalAwsOptions {
  region?: string;
  timeoutMs?: number;
  /** Publish the AWS provider's images for these versions. */
  kubernetesVersions?: string[];
  /** Prepare the account as clusterawsadm does: the AWS provider's instance profiles. */
  capaAccount?: boolean;
}

export async function startLocalAws(options: LocalAwsOptions = {}): Promise<LocalAws> {
  const port = await freeLoopbackPort();
  const endpoint = `http://127.0.0.1:${port}`;
  const imagesDir = options.kubernetesVersions?.length ? mkdtempSync(join(tmpdir(), 'capflow-local-aws-')) : undefined;
  if (imagesDir) writeFileSync(join(imagesDir, 'amis.json'), JSON.stringify(capaImageList(options.kubernetesVersions!)));
  const child: ChildProcess = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
    env: { ...process.env, ...(imagesDir ? { MOTO_AMIS_PATH: join(imagesDir, 'amis.json') } : {}) },
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
    if (imagesDir) rmSync(imagesDir, { recursive: true, force: true });
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
  if (options.capaAccount) {
    const iam = new IAMClient({ endpoint, region, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
    try {
      for (const name of CAPA_INSTANCE_PROFILES) await iam.send(new CreateInstanceProfileCommand({ InstanceProfileName: name }));
    } finally {
      iam.destroy();
    }
  }
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
