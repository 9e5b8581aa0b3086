/**
 * The kubelet stand-in's pods in the API: mirror pods for the static pods (recreated when the
 * manifest hash changes, deleted when the static pod is gone); run-to-completion host-network pods
 * run as local processes, and host-network pods' init containers too, their containers then reported
 * Running (process-pods.ts has the rule); every other pod bound to the node reported Running as kwok
 * does; pods being deleted confirmed gone (grace period 0), a process pod's once its process ended.
 */
import { createHash } from 'node:crypto';
import { PatchStrategy, Watch, setHeaderOptions, type V1OwnerReference, type V1Pod } from '@kubernetes/client-node';
import { parseCidr } from '../../core/cidr.js';
import { ConflictError } from '../../core/errors.js';
import { statusOf } from '../../core/kube-errors.js';
import type { ApiSession } from './api-session.js';
import type { ContainerLogAnswer } from './kubelet-server.js';
import { MIRROR_ANNOTATION, isMirrorPod, mirrorPodStatus, podKey, reportedRunning, runningPodStatus } from './pod-status.js';
import { ProcessPods, type ProcessPodsOptions, runsAsProcess } from './process-pods.js';
import type { StaticPodStatus } from './static-pods.js';

/** What the pods need of the registered Node. */
export interface PodsNode {
  readonly name: string;
  readonly ip: string;
  /** The Node's spec.podCIDR as last seen. */
  readonly podCIDR: string | undefined;
  ownerRefs(controller: boolean): V1OwnerReference[];
}

const HASH_ANNOTATION = 'kubernetes.io/config.hash';

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export class NodePods {
  private mirrorsDirty = true;
  private lastMirrorSync = 0;
  /** Pods bound to this node, by namespace/name, as the watch last saw them. */
  private readonly boundPods = new Map<string, V1Pod>();
  private readonly podWork = new Set<string>();
  private readonly mirrorStatusSent = new Map<string, string>();
  private readonly podIps = new Map<string, string>();
  private nextPodHost = 2;
  private watchAbort: AbortController | undefined;
  private readonly processes: ProcessPods;

  constructor(
    private readonly session: ApiSession,
    private readonly node: PodsNode,
    private readonly staticPods: () => StaticPodStatus[],
    processOptions: ProcessPodsOptions,
  ) {
    this.processes = new ProcessPods(
      session,
      {
        nodeIp: () => node.ip,
        patchStatus: async (pod, status) => {
          const { core } = session.requireClients();
          const updated = await core.patchNamespacedPodStatus({ name: pod.metadata!.name!, namespace: pod.metadata!.namespace!, body: { status } }, mergePatch);
          this.rememberPod(updated);
          return updated;
        },
        confirmDeletion: (pod) => this.deletePod(pod),
      },
      processOptions,
    );
  }

  /** The static pods changed: mirror pods are brought up to date at once. */
  staticPodsChanged(): void {
    this.mirrorsDirty = true;
    this.session.wake('status');
  }

  /** Ends the watch of pods bound to the node. */
  stop(): void {
    this.watchAbort?.abort();
  }

  /** Kills the process pods' processes (each with its pod's grace period). */
  async stopProcesses(): Promise<void> {
    await this.processes.stop();
  }

  /**
   * The log of a container of a pod bound to the node: a process pod's run, empty for a container
   * reported Running (it prints nothing); undefined when no such pod is bound here.
   */
  containerLog(namespace: string, name: string, container: string, previous: boolean): ContainerLogAnswer | undefined {
    const pod = this.boundPods.get(`${namespace}/${name}`);
    if (!pod || isMirrorPod(pod)) return undefined;
    const containers = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
    if (!containers.some((c) => c.name === container)) return { status: 404, message: `container "${container}" not found in pod "${name}"` };
    const run = this.processes.containerLog(pod.metadata?.uid ?? '', container, previous);
    if (run) return run;
    if (previous) return { status: 400, message: `previous terminated container "${container}" in pod "${name}" not found` };
    return { file: undefined };
  }

  /** Mirror pods when the static pods changed or intervalMs passed; bound pods are checked again with them. */
  async syncIfDue(now: number, intervalMs: number): Promise<void> {
    if (!this.mirrorsDirty && now - this.lastMirrorSync < intervalMs) return;
    this.mirrorsDirty = false;
    this.lastMirrorSync = now;
    await this.syncMirrorPods().catch((err: unknown) => {
      this.mirrorsDirty = true;
      this.session.report('syncing mirror pods', err);
    });
    for (const pod of this.boundPods.values()) this.reconcileBoundPod(pod);
  }

  /** Lists and then watches the pods bound to the node, again after any failure. */
  async watchLoop(): Promise<void> {
    const fieldSelector = `spec.nodeName=${this.node.name}`;
    const { session } = this;
    while (!session.stopped) {
      try {
        const { core, kc } = session.requireClients();
        const list = await core.listPodForAllNamespaces({ fieldSelector });
        const listed = new Set<string>();
        const listedUids = new Set<string>();
        for (const pod of list.items) {
          listed.add(podKey(pod));
          if (pod.metadata?.uid) listedUids.add(pod.metadata.uid);
          this.rememberPod(pod);
          this.reconcileBoundPod(pod);
        }
        for (const key of [...this.boundPods.keys()]) if (!listed.has(key)) this.forgetPod(key);
        this.processes.retainOnly(listedUids);
        const ended = new Promise<unknown>((resolveEnd) => {
          void new Watch(kc)
            .watch(
              '/api/v1/pods',
              { fieldSelector, resourceVersion: list.metadata?.resourceVersion, allowWatchBookmarks: true },
              (type: string, obj: V1Pod) => this.onPodEvent(type, obj),
              resolveEnd,
            )
            .then((abort) => (this.watchAbort = abort), resolveEnd);
        });
        session.recovered('watching pods bound to the node');
        const err = await ended;
        if (err && !session.stopped) session.report('watching pods bound to the node', err);
      } catch (err) {
        session.report('listing pods bound to the node', err);
      }
      await session.sleep(session.retryMs, 'other');
    }
  }

  // ------------------------------------------------------------------------------------------------
  // mirror pods

  private async syncMirrorPods(): Promise<void> {
    const statics = this.staticPods();
    if (statics.length === 0 && ![...this.boundPods.values()].some(isMirrorPod)) return;
    const { core } = this.session.requireClients();
    const { log } = this.session;
    const wanted = new Set<string>();
    for (const s of statics) {
      const name = `${s.name}-${this.node.name}`;
      wanted.add(`${s.namespace}/${name}`);
      let mirror = this.boundPods.get(`${s.namespace}/${name}`);
      if (mirror && !isMirrorPod(mirror)) {
        const conflict = new ConflictError('KUBELET_MIRROR_NAME_TAKEN', `a pod that is not a mirror pod is named ${s.namespace}/${name}`);
        this.session.report(`mirroring static pod ${s.namespace}/${s.name}`, conflict);
        continue;
      }
      if (mirror && (mirror.metadata?.annotations?.[MIRROR_ANNOTATION] !== s.manifestHash || mirror.metadata?.deletionTimestamp)) {
        log('Deleting outdated mirror pod', { pod: `${s.namespace}/${name}` });
        await this.deletePod(mirror);
        mirror = undefined;
      }
      if (!mirror) {
        log('Creating mirror pod', { pod: `${s.namespace}/${name}`, manifestHash: s.manifestHash });
        try {
          mirror = await core.createNamespacedPod({ namespace: s.namespace, body: this.mirrorPod(s, name) });
        } catch (err) {
          if (statusOf(err) !== 409) throw err;
          mirror = await core.readNamespacedPod({ name, namespace: s.namespace });
          this.mirrorsDirty = true; // compare its hash on the next pass
        }
        this.rememberPod(mirror);
      }
      const status = mirrorPodStatus(s, this.node.ip);
      const uid = mirror.metadata?.uid ?? '';
      const signature = `${uid}:${JSON.stringify(status)}`;
      if (this.mirrorStatusSent.get(uid) !== signature) {
        const updated = await core.patchNamespacedPodStatus({ name, namespace: s.namespace, body: { status } }, mergePatch);
        this.mirrorStatusSent.set(uid, signature);
        this.rememberPod(updated);
      }
    }
    // mirror pods whose static pod is gone go too, as the kubelet removes them
    for (const [key, pod] of this.boundPods) {
      if (isMirrorPod(pod) && !wanted.has(key)) {
        log('Deleting mirror pod of a removed static pod', { pod: key });
        await this.deletePod(pod);
      }
    }
  }

  private mirrorPod(s: StaticPodStatus, name: string): V1Pod {
    const m = s.manifest;
    return {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace: s.namespace,
        labels: m.metadata?.labels,
        annotations: {
          ...m.metadata?.annotations,
          [HASH_ANNOTATION]: s.manifestHash,
          [MIRROR_ANNOTATION]: s.manifestHash,
          'kubernetes.io/config.seen': new Date().toISOString(),
          'kubernetes.io/config.source': 'file',
        },
        ownerReferences: this.node.ownerRefs(true),
      },
      spec: { ...m.spec!, nodeName: this.node.name },
    };
  }

  // ------------------------------------------------------------------------------------------------
  // pods bound to the node

  private onPodEvent(type: string, pod: V1Pod): void {
    if (type === 'DELETED') {
      this.processes.forget(pod.metadata?.uid);
      this.forgetPod(podKey(pod), pod.metadata?.uid);
    } else if (type === 'ADDED' || type === 'MODIFIED') {
      this.rememberPod(pod);
      if (isMirrorPod(pod)) {
        if (pod.metadata?.deletionTimestamp) this.staticPodsChanged();
      } else {
        this.reconcileBoundPod(pod);
      }
    }
  }

  private rememberPod(pod: V1Pod): void {
    const key = podKey(pod);
    const known = this.boundPods.get(key);
    // a watch event may be older than the answer of our own write
    if (known && known.metadata?.uid === pod.metadata?.uid && Number(known.metadata?.resourceVersion) > Number(pod.metadata?.resourceVersion)) return;
    this.boundPods.set(key, pod);
  }

  /** With a UID, only if the pod known by that name is still that one (a mirror pod is recreated under its name). */
  private forgetPod(key: string, uid?: string): void {
    const pod = this.boundPods.get(key);
    if (uid !== undefined && pod?.metadata?.uid !== uid) return;
    this.boundPods.delete(key);
    const knownUid = pod?.metadata?.uid;
    if (knownUid) {
      this.podIps.delete(knownUid);
      this.mirrorStatusSent.delete(knownUid);
    }
    if (pod && isMirrorPod(pod)) this.staticPodsChanged();
  }

  /** A bound pod that is not a mirror pod: a process pod's own course; else confirm its deletion, or report it Running. */
  private reconcileBoundPod(pod: V1Pod): void {
    const key = podKey(pod);
    if (isMirrorPod(pod)) return;
    if (this.processes.has(pod.metadata?.uid) || runsAsProcess(pod)) {
      this.processes.reconcile(this.boundPods.get(key)?.metadata?.uid === pod.metadata?.uid ? this.boundPods.get(key)! : pod);
      return;
    }
    if (this.podWork.has(key)) return;
    const deleting = Boolean(pod.metadata?.deletionTimestamp);
    if (!deleting && (reportedRunning(pod) || pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed')) return;
    this.podWork.add(key);
    const work = deleting ? this.deletePod(pod) : this.reportRunning(pod);
    void work
      .catch((err: unknown) => this.session.report(`${deleting ? 'deleting' : 'updating the status of'} pod ${key}`, err))
      .finally(() => this.podWork.delete(key));
  }

  private async reportRunning(pod: V1Pod): Promise<void> {
    const { core } = this.session.requireClients();
    const status = runningPodStatus(pod, this.node.ip, this.podIp(pod));
    this.session.log('Reporting pod running', { pod: podKey(pod), podIP: status.podIP });
    const updated = await core.patchNamespacedPodStatus(
      { name: pod.metadata!.name!, namespace: pod.metadata!.namespace!, body: { status } },
      mergePatch,
    );
    this.rememberPod(updated);
  }

  /** Completes a deletion (grace period 0), only of the pod seen (its UID as precondition). */
  private async deletePod(pod: V1Pod): Promise<void> {
    const { core } = this.session.requireClients();
    if (!isMirrorPod(pod)) this.session.log('Confirming pod deletion', { pod: podKey(pod) });
    try {
      await core.deleteNamespacedPod({
        name: pod.metadata!.name!,
        namespace: pod.metadata!.namespace!,
        gracePeriodSeconds: 0,
        body: { gracePeriodSeconds: 0, preconditions: { uid: pod.metadata?.uid } },
      });
    } catch (err) {
      const status = statusOf(err);
      if (status !== 404 && status !== 409) throw err; // gone, or another pod by now
    }
  }

  /** Host-network pods have the node's address; the others one of the node's pod CIDR (or 10.244.<n>.0/24). */
  private podIp(pod: V1Pod): string {
    if (pod.spec?.hostNetwork) return this.node.ip;
    if (pod.status?.podIP) return pod.status.podIP;
    const uid = pod.metadata?.uid ?? podKey(pod);
    const known = this.podIps.get(uid);
    if (known) return known;
    const block = parseCidr(this.node.podCIDR ?? '') ?? { base: fallbackPodBlock(this.node.name), prefix: 24 };
    const size = 2 ** (32 - block.prefix);
    const used = new Set(this.podIps.values());
    let ip = '';
    for (let tries = 0; tries < size; tries++) {
      if (this.nextPodHost < 2 || this.nextPodHost > size - 2) this.nextPodHost = 2; // not the network, gateway or broadcast
      ip = ipv4(block.base + this.nextPodHost++);
      if (!used.has(ip)) break;
    }
    this.podIps.set(uid, ip);
    return ip;
  }
}

/** 10.244.<n>.0 with n from the node's name, for pods on a node without a pod CIDR. */
function fallbackPodBlock(nodeName: string): number {
  const n = createHash('sha256').update(nodeName).digest()[0]!;
  return ((10 << 24) >>> 0) + (244 << 16) + (n << 8);
}

function ipv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}
