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

const KUBE_BINARIES = ['kubeadm', 'etcd', 'etcdctl', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler'];

export interface MachineHost {
  kubeBinDir: string;
  cloudInitBinary: string;
  awsCli: string;
  /** The kube binaries' version (v1.34.4): the kubelet stand-in reports it. */
  kubernetesVersion: string;
  /**
   * Every Kubernetes version machines can boot with → its bin dir: `kubernetesVersion` → `kubeBinDir`,
   * and the test bed's previous release (KUBERNETES_PREVIOUS_VERSION, in `<bin>/<version>`) when
   * install.sh built it. For the supervisor's `kubeImages` and the AMIs the local AWS emulator lists.
   */
  kubeImages: Record<string, string>;
}

export function testbedBinDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.CAPFLOW_TESTBED_BIN ?? join(homedir(), '.cache', 'capflow-testbed', 'bin');
}

function testbedVersion(key: string): string | undefined {
  try {
    return new RegExp(`^${key}=["']?(v[\\d.]+)`, 'm').exec(readFileSync(join(packageRoot(), 'testbed', 'versions.env'), 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

/** The Kubernetes version the test bed builds (testbed/versions.env). */
export function testbedKubernetesVersion(): string | undefined {
  return testbedVersion('KUBERNETES_VERSION');
}

/** The release before it, which the test bed also builds for upgrade tests (KUBERNETES_PREVIOUS_VERSION). */
export function testbedPreviousKubernetesVersion(): string | undefined {
  return testbedVersion('KUBERNETES_PREVIOUS_VERSION');
}

/** install.sh links the previous release's binaries (and the shared etcd, etcdctl, kubectl) into `<bin>/<version>`. */
export function testbedVersionBinDir(version: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(testbedBinDir(env), version);
}

function kubeadmVersion(binDir: string): string | undefined {
  const version = spawnSync(join(binDir, 'kubeadm'), ['version', '-o', 'short'], { encoding: 'utf8' }).stdout?.trim();
  return version && /^v\d+\.\d+\.\d+/.test(version) ? version : undefined;
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
  const version = kubeadmVersion(kubeBinDir);
  if (!version) return { reason: `cannot tell the version of ${join(kubeBinDir, 'kubeadm')}` };
  const kubeImages: Record<string, string> = { [version]: kubeBinDir };
  // the previous release only when it is all there and is what it says
  const previous = testbedPreviousKubernetesVersion();
  const previousDir = previous ? testbedVersionBinDir(previous, env) : undefined;
  if (previous && previousDir && KUBE_BINARIES.every((b) => executable(join(previousDir, b))) && kubeadmVersion(previousDir) === previous) kubeImages[previous] = previousDir;
  return { host: { kubeBinDir, cloudInitBinary, awsCli, kubernetesVersion: version, kubeImages } };
}
