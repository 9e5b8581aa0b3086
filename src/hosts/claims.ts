/**
 * Host claims: a bring-your-own host serves one machine at a time. A claim is a secret in capflow's
 * secret store (a file under the local runner, a Secret in the management cluster), named after
 * the host's SSH address and port, so that reruns, other steps and other clusters sharing the
 * inventory's hosts all see it. Claiming is an atomic create-if-absent (SecretStore.create): of
 * two clusters claiming one host at once, exactly one wins.
 *
 * planClaims decides, purely, which hosts a cluster keeps, claims and releases; claimHost,
 * markReleasing and releaseHost carry that out.
 */
import { createHash } from 'node:crypto';
import { InternalError } from '../core/errors.js';
import type { SecretData, SecretStore } from '../core/secrets.js';
import type { InventoryHost } from '../spec/index.js';

export interface HostClaim {
  /** The host's name in the inventory when it was claimed. */
  host: string;
  address: string;
  port: number;
  /** The Cluster's name. */
  cluster: string;
  /** The machine group: the control plane or a MachineDeployment's name. */
  group: string;
  /** ISO 8601. */
  claimedAt: string;
  /** `releasing`: on its way out (being drained and reset); neither kept nor picked again. */
  state: 'claimed' | 'releasing';
}

export const CLAIM_PREFIX = 'capflow-host-';
export const CLAIM_LABEL = 'capflow.io/host-claim';
export const CLUSTER_LABEL = 'capflow.io/cluster';

const MAX_NAME = 253;
const HASH_LENGTH = 10;

/**
 * The claim's secret name: `capflow-host-<address>-<port>`, the address lowercased. Characters a
 * DNS-1123 subdomain cannot hold become `-` (and so do dots that do not sit between letters or
 * digits); when that changed the address, or it had to be shortened, a hash of the address and
 * port follows the port, so that the name stays unique per address:port.
 */
export function claimSecretName(address: string, port: number): string {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InternalError('HOST_PORT_INVALID', `port ${port} of host ${address} is not a TCP port`);
  const lower = address.toLowerCase();
  let s = lower
    .replace(/[^a-z0-9.-]/g, '-')
    .replace(/\.(?![a-z0-9])/g, '-')
    .replace(/(?<![a-z0-9])\./g, '-');
  let changed = s !== lower;
  const room = MAX_NAME - CLAIM_PREFIX.length - `-${port}`.length - (HASH_LENGTH + 1);
  if (s.length > room) {
    s = s.slice(0, room).replace(/\.+$/, '');
    changed = true;
  }
  const base = `${CLAIM_PREFIX}${s}-${port}`;
  if (!changed) return base;
  const hash = createHash('sha256').update(`${lower}:${port}`).digest('hex').slice(0, HASH_LENGTH);
  return `${base}-${hash}`;
}

function toData(c: HostClaim): SecretData {
  return { host: c.host, address: c.address, port: String(c.port), cluster: c.cluster, group: c.group, claimedAt: c.claimedAt, state: c.state };
}

function labelsOf(c: HostClaim): Record<string, string> {
  return { [CLUSTER_LABEL]: c.cluster, [CLAIM_LABEL]: 'true' };
}

/** A claim from its secret's data; undefined when the data is not a claim. */
function parseClaim(data: SecretData | undefined): HostClaim | undefined {
  if (!data) return undefined;
  const { host, address, cluster, group, claimedAt, state } = data;
  const port = Number(data.port);
  if (!host || !address || !cluster || !group || !claimedAt || !Number.isInteger(port)) return undefined;
  if (state !== 'claimed' && state !== 'releasing') return undefined;
  return { host, address, port, cluster, group, claimedAt, state };
}

function unreadable(name: string): InternalError {
  return new InternalError('HOST_CLAIM_UNREADABLE', `secret ${name} is not a host claim (host, address, port, cluster, group, claimedAt, state)`, {
    hint: `inspect it; delete it only when no cluster uses the host`,
  });
}

/** Every stored claim (of one cluster when given), in secret-name order. Secrets that are not claims are skipped. */
export async function listClaims(store: SecretStore, cluster?: string): Promise<HostClaim[]> {
  const out: HostClaim[] = [];
  for (const name of await store.list(CLAIM_PREFIX)) {
    const claim = parseClaim(await store.get(name));
    if (claim && (cluster === undefined || claim.cluster === cluster)) out.push(claim);
  }
  return out;
}

/**
 * Claims a host, atomically: ok with the new claim, or with the stored one when this cluster's
 * group already holds it (a rerun); otherwise heldBy names the holder (another cluster, another
 * group of this cluster, or this cluster's claim on its way out).
 */
export async function claimHost(
  store: SecretStore,
  want: Omit<HostClaim, 'claimedAt' | 'state'>,
): Promise<{ ok: true; claim: HostClaim } | { ok: false; heldBy: HostClaim }> {
  const name = claimSecretName(want.address, want.port);
  const claim: HostClaim = { host: want.host, address: want.address, port: want.port, cluster: want.cluster, group: want.group, claimedAt: new Date().toISOString(), state: 'claimed' };
  // A claim released between our create and our read is gone: try again (a few times).
  for (let attempt = 0; attempt < 5; attempt++) {
    if (await store.create(name, toData(claim), labelsOf(claim))) return { ok: true, claim };
    const data = await store.get(name);
    if (data === undefined) continue;
    const held = parseClaim(data);
    if (!held) throw unreadable(name);
    if (held.cluster === want.cluster && held.group === want.group && held.state === 'claimed') return { ok: true, claim: held };
    return { ok: false, heldBy: held };
  }
  throw new InternalError('HOST_CLAIM_CONTENDED', `host ${want.host} (${want.address}:${want.port}): its claim ${name} kept appearing and vanishing`);
}

/** Marks this cluster's claim as releasing (before the host is drained and reset). Nothing to do when the stored claim is not this cluster's, or gone. */
export async function markReleasing(store: SecretStore, claim: HostClaim): Promise<void> {
  const name = claimSecretName(claim.address, claim.port);
  const stored = parseClaim(await store.get(name));
  if (!stored || stored.cluster !== claim.cluster || stored.state === 'releasing') return;
  const releasing: HostClaim = { ...stored, state: 'releasing' };
  await store.put(name, toData(releasing), labelsOf(releasing));
}

/** Deletes the claim when the stored one is this cluster's: true when deleted, false when gone already or held by another cluster. */
export async function releaseHost(store: SecretStore, claim: HostClaim): Promise<boolean> {
  const name = claimSecretName(claim.address, claim.port);
  const stored = parseClaim(await store.get(name));
  // Only this cluster writes a claim of its own, so nothing can slip in between the read and the delete.
  if (!stored || stored.cluster !== claim.cluster) return false;
  await store.delete(name);
  return true;
}

export interface MachineGroupWant {
  /** The control plane or a MachineDeployment's name. */
  group: string;
  replicas: number;
  /** The group's ByoMachineTemplate selector. */
  matches: (labels: Record<string, string>) => boolean;
}

export interface ClaimPlan {
  /** This cluster's claims that stay, per group, oldest first. */
  keep: Array<{ group: string; host: InventoryHost }>;
  /** Free hosts to claim, in inventory order. */
  claim: Array<{ group: string; host: InventoryHost }>;
  /**
   * This cluster's claims no longer wanted, newest first: the host is gone from the inventory, no
   * longer matches its group's selector, its group is gone, it is beyond replicas (the newest go),
   * or it is already releasing (an interrupted release to finish).
   */
  release: HostClaim[];
  /** Groups without enough hosts; candidates are every inventory host the group's selector matches, claimed or not. */
  short: Array<{ group: string; want: number; have: number; candidates: string[] }>;
}

/**
 * Which hosts a cluster keeps, claims and releases; pure and deterministic. Existing claims of this
 * cluster come first (oldest first), then unclaimed matching hosts in inventory order. A host
 * claimed by another cluster, or by another group of this cluster, is never picked; this
 * cluster's `releasing` claims are neither kept nor picked. `claims` holds every cluster's.
 */
export function planClaims(hosts: InventoryHost[], groups: MachineGroupWant[], claims: HostClaim[], cluster: string): ClaimPlan {
  const endpoint = (address: string, port: number): string => claimSecretName(address, port);
  const index = new Map<string, number>();
  hosts.forEach((h, i) => {
    const k = endpoint(h.address, h.port ?? 22);
    if (!index.has(k)) index.set(k, i);
  });
  const hostOf = (c: HostClaim): InventoryHost | undefined => {
    const i = index.get(endpoint(c.address, c.port));
    return i === undefined ? undefined : hosts[i];
  };
  const labels = (h: InventoryHost): Record<string, string> => h.labels ?? {};
  const order = (a: HostClaim, b: HostClaim): number =>
    a.claimedAt < b.claimedAt ? -1 : a.claimedAt > b.claimedAt ? 1 : (index.get(endpoint(a.address, a.port)) ?? Infinity) - (index.get(endpoint(b.address, b.port)) ?? Infinity) || (a.host < b.host ? -1 : a.host > b.host ? 1 : 0);

  // Every claimed endpoint, whoever holds it: none of them is picked.
  const taken = new Set(claims.map((c) => endpoint(c.address, c.port)));
  const ours = claims.filter((c) => c.cluster === cluster);
  const groupNames = new Set(groups.map((g) => g.group));

  const plan: ClaimPlan = { keep: [], claim: [], release: [], short: [] };
  for (const c of ours) {
    if (c.state === 'releasing' || !groupNames.has(c.group)) plan.release.push(c);
  }
  const kept = new Map<string, number>();
  for (const g of groups) {
    const valid: HostClaim[] = [];
    for (const c of ours.filter((x) => x.group === g.group && x.state === 'claimed').sort(order)) {
      const h = hostOf(c);
      if (h && g.matches(labels(h))) valid.push(c);
      else plan.release.push(c);
    }
    const want = Math.max(0, g.replicas);
    for (const c of valid.slice(0, want)) plan.keep.push({ group: g.group, host: hostOf(c) as InventoryHost });
    plan.release.push(...valid.slice(want));
    kept.set(g.group, Math.min(valid.length, want));
  }
  for (const g of groups) {
    const want = Math.max(0, g.replicas);
    let have = kept.get(g.group) ?? 0;
    for (const h of hosts) {
      if (have >= want) break;
      const k = endpoint(h.address, h.port ?? 22);
      if (taken.has(k) || !g.matches(labels(h))) continue;
      taken.add(k);
      plan.claim.push({ group: g.group, host: h });
      have++;
    }
    if (have < want) plan.short.push({ group: g.group, want, have, candidates: hosts.filter((h) => g.matches(labels(h))).map((h) => h.name) });
  }
  plan.release.sort((a, b) => order(b, a));
  return plan;
}
