/**
 * From a BYOH cluster's spec to what the host steps act on: its machine groups (how many hosts of
 * which labels), the SSH targets of its inventory with where each is written in Git, the login key
 * from its Secret, and one pool of connections per step (opened lazily, closed together).
 */
import { InputError } from '../core/errors.js';
import type { SecretStore } from '../core/secrets.js';
import { CONTROL_PLANE_GROUP } from '../bootstrap/machine-data.js';
import { fieldLocation, labelSelectorMatches, type ByoHostInventory, type ByoMachineTemplate, type ClusterModel, type InventoryHost } from '../spec/index.js';
import type { MachineGroupWant } from './claims.js';
import { SshHost, type SshOptions, type SshTarget } from './ssh.js';

export const SSH_KEY_DEFAULT = 'ssh-privatekey';

/** The inventory of a BYOH cluster; refused when the folder has none. */
export function inventoryOf(model: ClusterModel): ByoHostInventory {
  if (!model.hostInventory) throw new InputError('HOST_INVENTORY_MISSING', `cluster ${model.name} is a bring-your-own-host cluster without a ByoHostInventory`, { hint: 'list the hosts in a capflow.io/v1alpha1 ByoHostInventory in the cluster folder' });
  return model.hostInventory;
}

/** The control plane and each MachineDeployment: replicas and their ByoMachineTemplate's selector. */
export function machineGroupsOf(model: ClusterModel): MachineGroupWant[] {
  const selector = (t: unknown) => (t as ByoMachineTemplate | undefined)?.spec.template.spec.selector;
  const kcp = model.controlPlane.spec as { replicas?: number };
  const cp = selector(model.controlPlaneMachineTemplate);
  return [
    { group: CONTROL_PLANE_GROUP, replicas: kcp.replicas ?? 1, matches: (labels: Record<string, string>) => labelSelectorMatches(cp, labels) },
    ...model.machineDeployments.map((md) => {
      const s = selector(md.machineTemplate);
      return { group: md.deployment.metadata.name, replicas: md.deployment.spec.replicas ?? 1, matches: (labels: Record<string, string>) => labelSelectorMatches(s, labels) };
    }),
  ];
}

/** Every inventory host as an SSH target, with its place in Git for messages. */
export function sshTargetsOf(model: ClusterModel): { targets: Map<string, SshTarget>; jumpHost?: SshTarget } {
  const inventory = inventoryOf(model);
  const doc = { kind: inventory.kind, name: inventory.metadata.name };
  const where = (path: Array<string | number>): string | undefined => {
    const loc = fieldLocation(model, doc, path);
    return loc ? `${loc.file}:${loc.line}` : undefined;
  };
  const targets = new Map(
    inventory.spec.hosts.map((h: InventoryHost, i) => {
      const at = where(['spec', 'hosts', i, h.hostKey ? 'hostKey' : 'name']);
      return [h.name, { name: h.name, address: h.address, port: h.port ?? 22, user: h.user, ...(h.hostKey ? { hostKey: h.hostKey } : {}), ...(h.trustOnFirstUse ? { trustOnFirstUse: true } : {}), ...(at ? { where: at } : {}) } satisfies SshTarget];
    }),
  );
  const j = inventory.spec.jumpHost;
  const jumpAt = where(['spec', 'jumpHost', 'hostKey']);
  return { targets, ...(j ? { jumpHost: { name: `jump host ${j.address}`, address: j.address, port: j.port ?? 22, user: j.user, hostKey: j.hostKey, ...(jumpAt ? { where: jumpAt } : {}) } } : {}) };
}

/** The SSH login key, from the inventory's Secret. */
export async function sshPrivateKey(store: SecretStore, ref: { name: string; key?: string } | undefined, clusterName: string): Promise<string> {
  if (!ref) throw new InputError('SSH_KEY_MISSING', `cluster ${clusterName}: the ByoHostInventory names no sshKeySecretRef`, { hint: 'put the private key in a Secret (key ssh-privatekey) and name it in spec.sshKeySecretRef' });
  const key = ref.key ?? SSH_KEY_DEFAULT;
  const value = (await store.get(ref.name))?.[key];
  if (!value) throw new InputError('SSH_KEY_MISSING', `cluster ${clusterName}: the Secret ${ref.name} has no key ${key}`, { hint: `kubectl create secret generic ${ref.name} --from-file=${key}=<private key file>` });
  return value;
}

/** The step's SSH connections: one per host, opened on first use, closed together. */
export class HostConnections {
  private readonly open = new Map<string, Promise<SshHost>>();

  constructor(private readonly o: SshOptions) {}

  get(target: SshTarget): Promise<SshHost> {
    let c = this.open.get(target.name);
    if (!c) {
      c = SshHost.connect(target, this.o);
      // A failed connection is not kept: a later call may try again.
      c.catch(() => this.open.delete(target.name));
      this.open.set(target.name, c);
    }
    return c;
  }

  /** Commands run so far on every host, by kind: a no-op rerun has 0 mutating. */
  async counts(): Promise<{ mutating: number; read: number }> {
    const total = { mutating: 0, read: 0 };
    for (const c of this.open.values()) {
      const host = await c.catch(() => undefined);
      if (host) {
        total.mutating += host.counts.mutating;
        total.read += host.counts.read;
      }
    }
    return total;
  }

  /** Keys trusted on first use in this step: the Git change to suggest. */
  async keysSeen(): Promise<string[]> {
    const out: string[] = [];
    for (const c of this.open.values()) {
      const seen = (await c.catch(() => undefined))?.keySeen;
      if (seen) out.push(`${seen.where ? `${seen.where}: ` : ''}hosts[${seen.host}].hostKey: ${seen.keyLine}`);
    }
    return out;
  }

  async closeAll(): Promise<void> {
    for (const c of this.open.values()) (await c.catch(() => undefined))?.close();
    this.open.clear();
  }
}

