/**
 * Whether this host can boot the emulator's machines, and with what: root and namespaces, the test
 * bed's kube binaries (testbed/install.sh builds them), cloud-init for the schema check, and the AWS
 * CLI the machines fetch their bootstrap payload with. `capflow demo` asks before it boots anything.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../core/package.js';
import { checkNamespaceSupport } from './network.js';
import { locateAwsCli } from './supervisor.js';

const KUBE_BINARIES = ['kubeadm', 'etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler'];

export interface MachineHost {
  kubeBinDir: string;
  cloudInitBinary: string;
  awsCli: string;
  /** The kube binaries' version (v1.34.4): the kubelet stand-in reports it. */
  kubernetesVersion: string;
}

export function testbedBinDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.CAPFLOW_TESTBED_BIN ?? join(homedir(), '.cache', 'capflow-testbed', 'bin');
}

/** The Kubernetes version the test bed builds (testbed/versions.env). */
export function testbedKubernetesVersion(): string | undefined {
  try {
    return /^KUBERNETES_VERSION=["']?(v[\d.]+)/m.exec(readFileSync(join(packageRoot(), 'testbed', 'versions.env'), 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of [...(env.PATH ?? '').split(':').filter(Boolean), '/usr/bin', '/usr/local/bin']) if (executable(join(dir, name))) return join(dir, name);
  return undefined;
}

/** What booting machines needs here, or the one reason it cannot (with what to do about it). */
export async function machineHost(env: NodeJS.ProcessEnv = process.env): Promise<{ host: MachineHost } | { reason: string }> {
  try {
    await checkNamespaceSupport();
  } catch (err) {
    return { reason: (err as Error).message };
  }
  const kubeBinDir = testbedBinDir(env);
  const missing = KUBE_BINARIES.filter((b) => !executable(join(kubeBinDir, b)));
  if (missing.length > 0) return { reason: `the kube binaries (${missing.join(', ')}) are not in ${kubeBinDir}; build them with bash testbed/install.sh` };
  const cloudInitBinary = onPath('cloud-init', env);
  if (!cloudInitBinary) return { reason: 'cloud-init is not installed; bash testbed/install.sh installs it' };
  const awsCli = locateAwsCli(env);
  if (!awsCli) return { reason: 'the AWS CLI is not installed; bash testbed/install.sh installs it' };
  const version = spawnSync(join(kubeBinDir, 'kubeadm'), ['version', '-o', 'short'], { encoding: 'utf8' }).stdout?.trim();
  if (!version || !/^v\d+\.\d+\.\d+/.test(version)) return { reason: `cannot tell the version of ${join(kubeBinDir, 'kubeadm')}` };
  return { host: { kubeBinDir, cloudInitBinary, awsCli, kubernetesVersion: version } };
}
