/**
 * What the kubelet stand-in reports about its machine in node status: capacity and allocatable
 * from this host's CPUs, memory and disk, and nodeInfo with the stand-in's versions.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statfsSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';

export interface MachineFactsOptions {
  nodeName: string;
  /** kubeletVersion, e.g. v1.34.4. */
  version: string;
  maxPods: number;
  /** /etc/os-release, for nodeInfo.osImage. */
  osRelease: string | undefined;
}

const RUNTIME_VERSION = 'capflow-stand-in://0.1';
/** The kubelet's default hard eviction thresholds, which allocatable leaves out. */
const EVICTION_MEMORY_BYTES = 100 * 1024 * 1024;
const EVICTION_NODEFS_FRACTION = 0.1;

/** Capacity, allocatable and nodeInfo: the parts of node status that do not change while the kubelet runs. */
export function machineStatus(opts: MachineFactsOptions): Record<string, unknown> {
  return {
    ...nodeCapacity(opts.maxPods),
    nodeInfo: {
      machineID: machineId(opts.nodeName),
      systemUUID: machineId(`${opts.nodeName}/uuid`),
      bootID: bootId(),
      kernelVersion: release(),
      osImage: osImage(opts.osRelease),
      containerRuntimeVersion: RUNTIME_VERSION,
      kubeletVersion: opts.version,
      // empty, as the v1.34 kubelet leaves it (DisableNodeKubeProxyVersion is on by default since v1.33)
      kubeProxyVersion: '',
      operatingSystem: 'linux',
      architecture: goArch(),
    },
  };
}

/** Node's process.arch as Go's GOARCH names it, for labels and nodeInfo. */
export function goArch(): string {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x' };
  return map[process.arch] ?? process.arch;
}

function nodeCapacity(maxPods: number): { capacity: Record<string, string>; allocatable: Record<string, string> } {
  const memory = totalmem();
  let storage = 100 * 1024 ** 3;
  try {
    const fs = statfsSync('/');
    storage = fs.blocks * fs.bsize;
  } catch {
    /* keep the default */
  }
  const ki = (bytes: number): string => `${Math.max(0, Math.floor(bytes / 1024))}Ki`;
  const common = { cpu: String(cpus().length), pods: String(maxPods), 'hugepages-1Gi': '0', 'hugepages-2Mi': '0' };
  return {
    capacity: { ...common, memory: ki(memory), 'ephemeral-storage': ki(storage) },
    allocatable: {
      ...common,
      memory: ki(memory - EVICTION_MEMORY_BYTES),
      'ephemeral-storage': String(Math.floor(storage * (1 - EVICTION_NODEFS_FRACTION))),
    },
  };
}

function machineId(seed: string): string {
  return createHash('sha256').update(seed).digest('hex').slice(0, 32);
}

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
}

function osImage(path = '/etc/os-release'): string {
  try {
    const m = /^PRETTY_NAME=(.*)$/m.exec(readFileSync(path, 'utf8'));
    if (m) return m[1]!.replace(/^["']|["']$/g, '');
  } catch {
    /* fall through */
  }
  return 'Linux';
}
