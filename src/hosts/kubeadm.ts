/**
 * kubeadm on a bring-your-own host, over SSH: the same cloud-config an EC2 machine boots with
 * (src/bootstrap renders it: PKI files, the kubeadm config, pre/post commands, `kubeadm init|join`)
 * is carried out by one shell script fed on stdin, so keys never appear in a command line or a log.
 *
 * The script runs under a lock on the host and checks first: a host whose kubelet already has its
 * kubeconfig is done (a rerun changes nothing); one left half-way by a dropped connection or a
 * crash (kubelet config or static pods written, no kubeconfig) is reset before it starts again; a
 * run still going on the host (its SSH session gone) is waited for rather than raced.
 */
import type { CloudConfig, WriteFile } from '../bootstrap/cloud-config.js';
import type { Logger } from '../core/logger.js';
import { shq, type HostShell } from './shell.js';

/** Held while kubeadm runs on the host. /run is a tmpfs: a reboot frees it. */
export const BOOTSTRAP_LOCK = '/run/capflow-bootstrap.lock';
/** kubeadm writes this last in init and join: the host is a node. */
export const KUBELET_KUBECONFIG = '/etc/kubernetes/kubelet.conf';
const PARTIAL_MARKERS = ['/var/lib/kubelet/config.yaml', '/etc/kubernetes/manifests/kube-apiserver.yaml', '/etc/kubernetes/manifests/etcd.yaml', '/etc/kubernetes/bootstrap-kubelet.conf'];
/** How long a run waits for another run's kubeadm on the same host. */
const LOCK_WAIT_SECONDS = 900;
/** The cloud-config modules a host we do not own does not get: its users, disks, clock and mounts are its owner's. */
const HOST_OWNED_MODULES = ['users', 'ntp', 'disk_setup', 'fs_setup', 'mounts'] as const;

export type HostKubeState = 'node' | 'partial' | 'clean';

/** What kubeadm left on the host (one read-only command). */
export async function hostKubeState(shell: HostShell): Promise<HostKubeState> {
  const probe = [`[ -e ${KUBELET_KUBECONFIG} ] && echo node && exit 0`, ...PARTIAL_MARKERS.map((f) => `[ -e ${f} ] && echo partial && exit 0`), 'echo clean'].join('; ');
  const state = (await shell.run(probe)).stdout.trim();
  return state === 'node' || state === 'partial' ? state : 'clean';
}

/**
 * Carry out a role's cloud-config on the host: bootcmd, files, runcmd (kubeadm among them), under
 * the lock. Returns false when the host was a node already (nothing ran but the check).
 */
export async function runBootstrap(shell: HostShell, config: CloudConfig, o: { what: string; log: Logger; extraFiles?: WriteFile[] }): Promise<boolean> {
  if ((await hostKubeState(shell)) === 'node') return false;
  const ignored = HOST_OWNED_MODULES.filter((m) => config[m] !== undefined);
  if (ignored.length > 0) o.log.warn(`Host ${shell.host}: ${ignored.join(', ')} of the bootstrap spec are left to the host's owner on bring-your-own hosts`, { host: shell.host });
  const result = await shell.run(`sh -s # ${o.what}`, { stdin: bootstrapScript(config, o.extraFiles ?? []), mutating: true });
  if (/^capflow: already a node$/m.test(result.stdout)) return false;
  o.log.info(`Host ${shell.host}: ${o.what} done`, { host: shell.host });
  return true;
}

/** `kubeadm reset` and what it leaves (CNI config, kube-vip's manifest); nothing when the host is clean. */
export async function resetHost(shell: HostShell, log: Logger): Promise<boolean> {
  if ((await hostKubeState(shell)) === 'clean') return false;
  await shell.run(`flock -w ${LOCK_WAIT_SECONDS} ${BOOTSTRAP_LOCK} sh -c ${shq('kubeadm reset -f && rm -rf /etc/cni/net.d/* /etc/kubernetes/manifests/kube-vip.yaml /run/cluster-api')}`, { mutating: true });
  log.info(`Host ${shell.host}: kubeadm reset`, { host: shell.host });
  return true;
}

/** The script fed on stdin: lock, check, reset a half-done host, write the files, run the commands. */
export function bootstrapScript(config: CloudConfig, extraFiles: readonly WriteFile[]): string {
  const bootcmd = Array.isArray(config.bootcmd) ? (config.bootcmd as Array<string | string[]>) : [];
  return [
    'set -eu',
    `exec 9>${BOOTSTRAP_LOCK}`,
    `flock -w ${LOCK_WAIT_SECONDS} 9`,
    `if [ -e ${KUBELET_KUBECONFIG} ]; then echo 'capflow: already a node'; exit 0; fi`,
    // A kubeadm that stopped half-way (the connection dropped, the step was killed) is undone first.
    `if ${PARTIAL_MARKERS.map((f) => `[ -e ${f} ]`).join(' || ')}; then echo 'capflow: resetting what an interrupted kubeadm left'; kubeadm reset -f; fi`,
    ...bootcmd.map(commandLine),
    ...[...config.write_files, ...extraFiles].flatMap(writeFileLines),
    ...config.runcmd.map(commandLine),
    '',
  ].join('\n');
}

/**
 * A runcmd entry: a shell line as it is, an argv list quoted word by word (as cloud-init does).
 * Each stops the script when it fails: `set -e` alone lets `kubeadm init ... && echo success` fail
 * silently (an AND list's first command is exempt).
 */
function commandLine(c: string | string[]): string {
  const line = Array.isArray(c) ? c.map(shq).join(' ') : c;
  const said = shq(`capflow: failed: ${line.split('\n')[0]!.slice(0, 120)}`);
  return `{ ${line}\n} || { rc=$?; echo ${said} "(exit $rc)" >&2; exit $rc; }`;
}

/** One file written atomically with its mode and owner; its content travels base64 inside the script. */
function writeFileLines(f: WriteFile): string[] {
  const decode = f.encoding === 'gzip+base64' || f.encoding === 'gz+b64' || f.encoding === 'gz+base64' ? 'base64 -d | base64 -d | gunzip' : f.encoding === 'base64' || f.encoding === 'b64' ? 'base64 -d | base64 -d' : 'base64 -d';
  const tmp = `${f.path}.capflow-tmp`;
  const content = Buffer.from(f.content, 'utf8').toString('base64');
  const lines = [`mkdir -p "$(dirname ${shq(f.path)})"`];
  if (f.append) lines.push(`printf '%s' ${shq(content)} | ${decode} >> ${shq(f.path)}`);
  else lines.push(`printf '%s' ${shq(content)} | ${decode} > ${shq(tmp)}`, `chmod ${shq(f.permissions ?? '0644')} ${shq(tmp)}`, `mv -f ${shq(tmp)} ${shq(f.path)}`);
  if (f.owner) lines.push(`chown ${shq(f.owner)} ${shq(f.path)}`);
  if (f.append && f.permissions) lines.push(`chmod ${shq(f.permissions)} ${shq(f.path)}`);
  return lines;
}
