/**
 * The stacked etcd cluster of a kubeadm control plane, seen and changed from inside the workload
 * cluster: `etcdctl` runs in a short-lived host-network pod pinned to a healthy control plane node,
 * with that node's etcd image and its etcd client certificate, and capflow reads the answer from the
 * pod's log through the API server. Cluster API reaches etcd through a port-forward to the etcd pod
 * instead; a pod needs nothing but the admin kubeconfig and works wherever the API does.
 *
 * A control plane machine's member goes before the machine does: a terminated member that stays in
 * the member list costs the cluster its quorum one failure sooner (and a 2-member cluster at once).
 */
import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { CoreV1Api, V1Pod } from '@kubernetes/client-node';
import { TransientError } from '../core/errors.js';
import { statusOf, wrapKubeError } from '../core/kube-errors.js';
import type { Logger } from '../core/logger.js';
import { listNodes } from './nodes.js';

export interface EtcdMember {
  /** Hex, as etcdctl takes it. */
  id: string;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
}

const NAMESPACE = 'kube-system';
const CONTROL_PLANE_LABEL = 'node-role.kubernetes.io/control-plane';
/** Every etcdctl pod carries it, so a run can clear what a crashed one left. */
const ETCDCTL_LABEL = 'capflow.dev/etcdctl';

export interface EtcdOptions {
  log: Logger;
  signal?: AbortSignal;
  /** How long one etcdctl pod may take to finish. Default 2 min. */
  podTimeoutMs?: number;
  pollMs?: number;
}

/** What the etcd static pod on a node tells: its image and where the node keeps the etcd certificates. */
async function etcdPodOf(core: CoreV1Api, node: string): Promise<{ image: string; pkiDir: string } | undefined> {
  let pod: V1Pod;
  try {
    pod = await core.readNamespacedPod({ name: `etcd-${node}`, namespace: NAMESPACE });
  } catch (err) {
    if (statusOf(err) === 404) return undefined;
    throw wrapKubeError(err, `reading the etcd pod of Node ${node}`, { verb: 'get', resource: 'pods', namespace: NAMESPACE });
  }
  const c = pod.spec?.containers?.[0];
  if (!c?.image) return undefined;
  const caFlag = [...(c.command ?? []), ...(c.args ?? [])].find((a) => a.startsWith('--trusted-ca-file='));
  const caFile = caFlag?.slice('--trusted-ca-file='.length) ?? '/etc/kubernetes/pki/etcd/ca.crt';
  return { image: c.image, pkiDir: caFile.slice(0, caFile.lastIndexOf('/')) };
}

/** etcdctl's `-w json --hex` member list; IDs as hex strings (older etcdctl print them as numbers). */
export function parseMemberList(text: string): EtcdMember[] {
  // a uint64 printed as a JSON number loses digits in JSON.parse: quote it first
  const quoted = text.replace(/"ID"\s*:\s*(\d+)/g, '"ID":"#$1"');
  const parsed = JSON.parse(quoted) as { members?: Array<{ ID?: string; name?: string; peerURLs?: string[]; clientURLs?: string[]; isLearner?: boolean }> };
  return (parsed.members ?? []).map((m) => {
    const raw = m.ID ?? '';
    const id = raw.startsWith('#') ? BigInt(raw.slice(1)).toString(16) : raw.toLowerCase();
    return { id, name: m.name ?? '', peerURLs: m.peerURLs ?? [], clientURLs: m.clientURLs ?? [], isLearner: m.isLearner === true };
  });
}

/** The etcdctl of one control plane node. */
export class EtcdCtl {
  private constructor(
    private readonly core: CoreV1Api,
    readonly node: string,
    private readonly etcd: { image: string; pkiDir: string },
    private readonly o: EtcdOptions,
  ) {}

  /**
   * A Ready control plane Node with an etcd pod, other than those in `avoid` (the machines about to
   * go); undefined when there is none.
   */
  static async on(core: CoreV1Api, avoid: readonly string[], o: EtcdOptions): Promise<EtcdCtl | undefined> {
    const nodes = [...(await listNodes(core)).values()].filter((n) => n.ready && n.labels[CONTROL_PLANE_LABEL] !== undefined && !avoid.includes(n.name));
    for (const n of nodes.sort((a, b) => a.name.localeCompare(b.name))) {
      const etcd = await etcdPodOf(core, n.name);
      if (etcd) return new EtcdCtl(core, n.name, etcd, o);
    }
    return undefined;
  }

  async members(): Promise<EtcdMember[]> {
    return parseMemberList(await this.run(['member', 'list', '-w', 'json', '--hex'], 'member-list'));
  }

  async remove(member: EtcdMember): Promise<void> {
    await this.run(['member', 'remove', member.id], 'member-remove');
  }

  /** Runs etcdctl with these arguments on the node and returns what it printed (exit 0), or throws. */
  private async run(args: string[], purpose: string): Promise<string> {
    await this.clearFinished();
    const name = `capflow-etcdctl-${purpose}-${createHash('sha256').update(`${this.node}\0${args.join('\0')}`).digest('hex').slice(0, 10)}`;
    const pki = this.etcd.pkiDir;
    const pod: V1Pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: NAMESPACE, labels: { [ETCDCTL_LABEL]: purpose, 'app.kubernetes.io/managed-by': 'capflow' } },
      spec: {
        nodeName: this.node,
        hostNetwork: true,
        restartPolicy: 'Never',
        priorityClassName: 'system-node-critical',
        tolerations: [{ operator: 'Exists' }],
        automountServiceAccountToken: false,
        volumes: [{ name: 'etcd-certs', hostPath: { path: pki, type: 'Directory' } }],
        containers: [
          {
            name: 'etcdctl',
            image: this.etcd.image,
            command: ['etcdctl', '--endpoints=https://127.0.0.1:2379', `--cacert=${pki}/ca.crt`, `--cert=${pki}/healthcheck-client.crt`, `--key=${pki}/healthcheck-client.key`, '--command-timeout=30s', ...args],
            volumeMounts: [{ name: 'etcd-certs', mountPath: pki, readOnly: true }],
          },
        ],
      },
    };
    await this.deletePod(name);
    try {
      await this.core.createNamespacedPod({ namespace: NAMESPACE, body: pod });
    } catch (err) {
      throw wrapKubeError(err, `creating pod ${NAMESPACE}/${name}`, { verb: 'create', resource: 'pods', namespace: NAMESPACE });
    }
    try {
      const done = await this.waitFinished(name);
      const log = await this.logOf(name);
      if (done.phase !== 'Succeeded') {
        throw new TransientError('ETCDCTL_FAILED', `etcdctl ${args.slice(0, 2).join(' ')} on Node ${this.node} failed (${done.reason}): ${log.trim().split('\n').slice(-3).join(' | ') || 'no output'}`, {
          hint: `the pod ${NAMESPACE}/${name} ran the etcd image ${this.etcd.image}; run again once etcd on ${this.node} is healthy`,
        });
      }
      return log;
    } finally {
      await this.deletePod(name);
    }
  }

  private async waitFinished(name: string): Promise<{ phase: string; reason: string }> {
    const deadline = Date.now() + (this.o.podTimeoutMs ?? 120_000);
    for (;;) {
      this.o.signal?.throwIfAborted();
      let pod: V1Pod;
      try {
        pod = await this.core.readNamespacedPod({ name, namespace: NAMESPACE });
      } catch (err) {
        throw wrapKubeError(err, `reading pod ${NAMESPACE}/${name}`, { verb: 'get', resource: 'pods', namespace: NAMESPACE });
      }
      const phase = pod.status?.phase ?? 'Pending';
      const state = pod.status?.containerStatuses?.[0]?.state;
      if (phase === 'Succeeded' || phase === 'Failed') {
        const t = state?.terminated;
        return { phase, reason: t ? `exit ${t.exitCode}${t.reason ? `, ${t.reason}` : ''}${t.message ? `: ${t.message.trim()}` : ''}` : (pod.status?.reason ?? phase) };
      }
      if (Date.now() > deadline) {
        const waiting = state?.waiting;
        throw new TransientError('ETCDCTL_TIMEOUT', `etcdctl pod ${NAMESPACE}/${name} on Node ${this.node} did not finish within ${Math.round((this.o.podTimeoutMs ?? 120_000) / 1000)}s (${phase}${waiting ? `: ${waiting.reason} ${waiting.message ?? ''}`.trimEnd() : ''})`);
      }
      await delay(this.o.pollMs ?? 1000, undefined, this.o.signal ? { signal: this.o.signal } : {});
    }
  }

  private async logOf(name: string): Promise<string> {
    try {
      return await this.core.readNamespacedPodLog({ name, namespace: NAMESPACE, container: 'etcdctl' });
    } catch (err) {
      throw wrapKubeError(err, `reading the log of pod ${NAMESPACE}/${name}`, { verb: 'get', resource: 'pods/log', namespace: NAMESPACE });
    }
  }

  private async deletePod(name: string): Promise<void> {
    try {
      await this.core.deleteNamespacedPod({ name, namespace: NAMESPACE, gracePeriodSeconds: 0 });
    } catch (err) {
      if (statusOf(err) !== 404) throw wrapKubeError(err, `deleting pod ${NAMESPACE}/${name}`, { verb: 'delete', resource: 'pods', namespace: NAMESPACE });
    }
  }

  /** Finished etcdctl pods a crashed run left behind. */
  private async clearFinished(): Promise<void> {
    let pods: V1Pod[];
    try {
      pods = (await this.core.listNamespacedPod({ namespace: NAMESPACE, labelSelector: ETCDCTL_LABEL })).items;
    } catch (err) {
      throw wrapKubeError(err, 'listing etcdctl pods', { verb: 'list', resource: 'pods', namespace: NAMESPACE });
    }
    for (const p of pods) if (p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed') await this.deletePod(p.metadata?.name ?? '');
  }
}

/** The member of a control plane machine: etcd is named after the Node (kubeadm), else found by its peer address. */
export function memberOf(members: readonly EtcdMember[], machine: { privateDns: string; privateIp: string }): EtcdMember | undefined {
  return members.find((m) => m.name === machine.privateDns) ?? (machine.privateIp ? members.find((m) => m.peerURLs.some((u) => new URL(u).hostname === machine.privateIp)) : undefined);
}

/**
 * Removes a control plane machine's etcd member, once every other member is a started voter (a
 * member that has not started, or is still a learner, would be left without quorum). Waits for
 * that up to `timeoutMs`; no member for the machine is done. Returns whether it removed one.
 */
export async function removeEtcdMember(core: CoreV1Api, machine: { name: string; privateDns: string; privateIp: string }, o: EtcdOptions & { timeoutMs: number }): Promise<boolean> {
  const deadline = Date.now() + o.timeoutMs;
  for (;;) {
    const ctl = await EtcdCtl.on(core, [machine.privateDns], o);
    let why: string;
    if (ctl) {
      const members = await ctl.members();
      const member = memberOf(members, machine);
      if (!member) {
        o.log.info('No etcd member to remove', { machine: machine.name, members: members.length });
        return false;
      }
      const others = members.filter((m) => m !== member);
      const unready = others.filter((m) => m.isLearner || m.clientURLs.length === 0 || !m.name);
      if (others.length > 0 && unready.length === 0) {
        o.log.info('Removing etcd member', { machine: machine.name, member: member.name || member.id, via: ctl.node, left: others.length });
        await ctl.remove(member);
        return true;
      }
      why = others.length === 0 ? `it is the only member` : `member(s) ${unready.map((m) => m.name || m.id).join(', ')} not started or still learners`;
    } else {
      why = 'no other Ready control plane Node with an etcd pod';
    }
    if (Date.now() > deadline) {
      throw new TransientError('ETCD_MEMBER_NOT_REMOVABLE', `the etcd member of ${machine.name} cannot be removed yet: ${why}`, {
        hint: 'the machine stays until its member can go; run again once the new control plane machine is healthy',
      });
    }
    o.log.info('Waiting before removing etcd member', { machine: machine.name, why });
    await delay(o.pollMs ?? 2000, undefined, o.signal ? { signal: o.signal } : {});
  }
}
