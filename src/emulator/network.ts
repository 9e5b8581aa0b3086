/**
 * The emulator's networks, made of Linux network namespaces with iproute2.
 *
 * A VPC is one namespace holding a bridge: the bridge carries the VPC router's address (the VPC
 * block's first host, as AWS reserves it) and every load balancer address of that VPC. A machine is
 * one namespace whose `eth0` (a veth plugged into its VPC's bridge) has the instance's private IP
 * with the VPC's prefix, so the machines of a VPC share one flat network, and a default route to the
 * router (kubeadm picks its advertise address from the default route's interface).
 *
 * Nothing leaves the host: no namespace has a route out, no address outside the VPC block is
 * configured, and VPCs are separate namespaces, so clusters with the same CIDR (everyone's
 * 10.0.0.0/16) coexist. The host reaches a VPC only through the unix sockets of its router process.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { parseCidr } from '../core/cidr.js';
import { CapflowError, TransientError } from '../core/errors.js';

const exec = promisify(execFile);

export interface VpcNetwork {
  vpcId: string;
  cidr: string;
  /** The namespace holding the bridge. */
  netns: string;
  /** The bridge's address: the VPC router, the machines' default gateway. */
  routerAddress: string;
  prefixLength: number;
}

export class NetworkError extends CapflowError {
  constructor(message: string, cause?: unknown) {
    super('internal', 'EMULATOR_NETWORK', message, { cause });
  }
}

const BRIDGE = 'br0';

/** `ip` with its stderr in the error; `ignore` lists the messages that mean "already so". */
export async function ip(args: string[], ignore: RegExp[] = []): Promise<string> {
  try {
    const { stdout } = await exec('ip', args, { timeout: 15_000 });
    return stdout;
  } catch (err) {
    const stderr = String((err as { stderr?: string }).stderr ?? '');
    if (ignore.some((re) => re.test(stderr))) return '';
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NetworkError('iproute2 (`ip`) is not installed; the test bed needs it: bash testbed/install.sh');
    throw new NetworkError(`ip ${args.join(' ')}: ${stderr.trim() || (err as Error).message}`, err);
  }
}

const EXISTS = [/File exists/, /already exists/, /Address already assigned/];
const GONE = [/No such file or directory/, /Cannot find device/, /does not exist/, /Cannot open network namespace/];

export async function listNetns(): Promise<string[]> {
  const out = await ip(['netns', 'list']);
  return out
    .split('\n')
    .map((line) => line.split(' ')[0]!.trim())
    .filter(Boolean);
}

async function addNetns(name: string): Promise<void> {
  await ip(['netns', 'add', name], EXISTS);
  await ip(['-n', name, 'link', 'set', 'lo', 'up']);
}

/** Deletes a namespace; its veths go with it. Processes still inside must be gone first (see pidsIn). */
export async function deleteNetns(name: string): Promise<void> {
  await ip(['netns', 'delete', name], GONE);
}

/** The processes whose network namespace is `name` (to stop everything a machine started). */
export async function pidsIn(name: string): Promise<number[]> {
  const out = await ip(['netns', 'pids', name], GONE);
  return out
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
}

/** The VPC block's first host address, which AWS reserves for the VPC router. */
export function routerAddressOf(cidr: string): string {
  const block = parseCidr(cidr);
  if (!block) throw new NetworkError(`not an IPv4 CIDR block: ${cidr}`);
  return intToIp(block.base + 1);
}

export function intToIp(n: number): string {
  return [24, 16, 8, 0].map((shift) => (n >>> shift) & 255).join('.');
}

/** Makes (or finds) the VPC's namespace and bridge. */
export async function ensureVpcNetwork(netns: string, vpcId: string, cidr: string): Promise<VpcNetwork> {
  const block = parseCidr(cidr);
  if (!block) throw new NetworkError(`VPC ${vpcId} has no IPv4 CIDR block (${cidr})`);
  const net: VpcNetwork = { vpcId, cidr, netns, routerAddress: routerAddressOf(cidr), prefixLength: block.prefix };
  await addNetns(netns);
  await ip(['-n', netns, 'link', 'add', BRIDGE, 'type', 'bridge'], EXISTS);
  // A bridge without an address of its own takes the lowest MAC of its ports, and changes it when
  // that port goes or a lower one comes: the router's and load balancers' MAC would move under the
  // other machines, which send to the old one until their ARP entry expires (15-45 s, longer than a
  // Node's monitor grace: a terminated worker took a second worker's kubelet off the API with it).
  await ip(['-n', netns, 'link', 'set', BRIDGE, 'address', bridgeMacOf(net.routerAddress)]);
  await ip(['-n', netns, 'link', 'set', BRIDGE, 'up']);
  await addVpcAddress(net, net.routerAddress, net.prefixLength);
  return net;
}

/** The bridge's own MAC: locally administered, the router address in its last four bytes (02:00:0a:00:00:01 for 10.0.0.1). */
export function bridgeMacOf(routerAddress: string): string {
  return ['02', '00', ...routerAddress.split('.').map((o) => Number(o).toString(16).padStart(2, '0'))].join(':');
}

/** An extra address on the VPC's bridge (a load balancer's); /32 so it adds no route. */
export async function addVpcAddress(net: VpcNetwork, address: string, prefixLength = 32): Promise<void> {
  await ip(['-n', net.netns, 'addr', 'add', `${address}/${prefixLength}`, 'dev', BRIDGE], EXISTS);
}

export async function removeVpcAddress(net: VpcNetwork, address: string, prefixLength = 32): Promise<void> {
  await ip(['-n', net.netns, 'addr', 'del', `${address}/${prefixLength}`, 'dev', BRIDGE], [...GONE, /Cannot assign requested address/]);
}

/**
 * Makes the machine's namespace and plugs it into the VPC: `eth0` with `address`/VPC prefix, a
 * default route to the router. `vethName` (at most 15 characters) names the bridge side.
 */
export async function attachMachine(net: VpcNetwork, machineNetns: string, vethName: string, address: string): Promise<void> {
  if (vethName.length > 15) throw new NetworkError(`interface name too long: ${vethName}`);
  await addNetns(machineNetns);
  const present = await ip(['-n', machineNetns, '-o', 'addr', 'show', 'dev', 'eth0'], GONE);
  if (!present.includes(`inet ${address}/`)) {
    // a half-made machine (crash between the steps) is made again from the start
    await ip(['-n', machineNetns, 'link', 'del', 'eth0'], GONE);
    await ip(['-n', net.netns, 'link', 'add', vethName, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', machineNetns]);
    await ip(['-n', net.netns, 'link', 'set', vethName, 'master', BRIDGE, 'up']);
    await ip(['-n', machineNetns, 'addr', 'add', `${address}/${net.prefixLength}`, 'dev', 'eth0']);
    await ip(['-n', machineNetns, 'link', 'set', 'eth0', 'up']);
  }
  await ip(['-n', machineNetns, 'route', 'replace', 'default', 'via', net.routerAddress, 'dev', 'eth0']);
}

/** What the tests and the supervisor need before making any namespace: root and iproute2. */
export async function checkNamespaceSupport(): Promise<void> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new TransientError('EMULATOR_NEEDS_ROOT', 'booting machines needs root (network and mount namespaces, overlay mounts); run the tests as root');
  }
  for (const tool of ['ip', 'unshare', 'mount', 'nsenter']) {
    try {
      await exec(tool, ['--version'], { timeout: 5_000 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new TransientError('EMULATOR_TOOL_MISSING', `booting machines needs \`${tool}\` (iproute2, util-linux); install them with bash testbed/install.sh`);
      }
    }
  }
}
