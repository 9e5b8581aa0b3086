/**
 * A stand-in for kube-vip (https://kube-vip.io), the control plane's virtual IP as a static pod: the
 * kubelet stand-in (static-pods.ts) runs a container whose image is kube-vip's
 * (`ghcr.io/kube-vip/kube-vip:<tag>`, or any `<registry>/.../kube-vip:<tag>`) as this small process
 * instead of the image's `manager`. It does what kube-vip does in ARP mode for the one leader:
 *
 *   - adds the address of env `address` (or `vip_address`) with prefix `vip_cidr` (default 32) to the
 *     interface of env `vip_interface` (default: the default route's, else eth0) of the machine's
 *     network namespace (`ip addr add`), so the address answers ARP on the machine's network;
 *   - keeps running (checking every 2 s that the address is still there, adding it back if not) while
 *     the pod runs, and removes the address when it is stopped (SIGTERM or SIGINT).
 *
 * Not played: leader election (with `vip_leaderelection=true` every stand-in takes the address, as
 * the leader would: one control plane per VIP), gratuitous ARP (neighbours learn the address when
 * they ask for it), BGP, services load balancing and the API calls kube-vip makes with its kubeconfig
 * (its volumes, hostAliases and capabilities are accepted and ignored). Its output goes to the static
 * pod's container log; it runs as any static pod (Running, restarts with the crash backoff).
 */
import type { V1Container } from '@kubernetes/client-node';

/** Whether a container image is kube-vip's: `ghcr.io/kube-vip/kube-vip:v0.8.9`, `registry.local/kube-vip:v1`, ... */
export function isKubeVipImage(image: string | undefined): boolean {
  if (!image) return false;
  const name = image.replace(/@sha256:[0-9a-f]+$/, '').replace(/:[^/:]+$/, '');
  return name === 'kube-vip' || name.endsWith('/kube-vip');
}

/** The stand-in's process for a container (node and its arguments), or undefined when it is none of the stand-ins'. */
export function containerStandIn(container: V1Container, nodeBinary = process.execPath): { bin: string; args: string[]; what: string } | undefined {
  if (!isKubeVipImage(container.image)) return undefined;
  return { bin: nodeBinary, args: ['-e', KUBE_VIP_STAND_IN_SOURCE, 'kube-vip-stand-in', ...(container.args ?? [])], what: 'the kube-vip stand-in' };
}

// Run with `node -e`; the container's environment is its own (env of the manifest, PATH of the kubelet).
const KUBE_VIP_STAND_IN_SOURCE = String.raw`'use strict';
const { execFileSync } = require('node:child_process');
const env = process.env;
const log = (line) => console.log(new Date().toISOString() + ' kube-vip stand-in: ' + line);
function ip(args, okWhen) {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const message = String(err.stderr || err.message).trim();
    if (okWhen && okWhen.test(message)) return '';
    throw new Error('ip ' + args.join(' ') + ': ' + message);
  }
}
const address = (env.address || env.vip_address || '').trim();
const prefix = (env.vip_cidr || '32').trim();
if (!/^\d+\.\d+\.\d+\.\d+$/.test(address)) {
  log('env address (or vip_address) holds no IPv4 address: "' + address + '"; the stand-in resolves no names');
  process.exit(1);
}
let device = (env.vip_interface || '').trim();
if (!device) {
  const route = /\bdev (\S+)/.exec(ip(['-4', 'route', 'show', 'default']));
  device = route ? route[1] : 'eth0';
}
if (env.vip_leaderelection === 'true') log('leader election is not played: this instance takes the address as the leader');
if (env.vip_arp !== undefined && env.vip_arp !== 'true') log('only ARP mode is played (vip_arp=' + env.vip_arp + ')');
const cidr = address + '/' + prefix;
const present = () => new RegExp('inet ' + cidr.replace(/\./g, '\\.') + ' ').test(ip(['-4', '-o', 'addr', 'show', 'dev', device]));
const add = () => ip(['addr', 'add', cidr, 'dev', device], /File exists|already assigned/);
add();
log('leader (ARP mode): ' + cidr + ' added to ' + device);
const timer = setInterval(() => {
  try {
    if (!present()) {
      add();
      log(cidr + ' was gone from ' + device + '; added again');
    }
  } catch (err) {
    log(err.message);
  }
}, 2000);
const stop = (signal) => {
  clearInterval(timer);
  try {
    ip(['addr', 'del', cidr, 'dev', device], /Cannot assign requested address|not found|No such|Cannot find device/);
    log(signal + ': ' + cidr + ' removed from ' + device);
  } catch (err) {
    log(signal + ': ' + err.message);
  }
  process.exit(0);
};
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
`;
