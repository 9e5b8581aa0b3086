/**
 * Pod status as the kubelet stand-in reports it: kwok's Running for pods bound to the node, a
 * static pod's process state for its mirror pod, and a process pod's (process-pods.ts) own run.
 */
import { createHash } from 'node:crypto';
import { constants as osConstants } from 'node:os';
import type { V1Container, V1ContainerStatus, V1Pod, V1PodCondition } from '@kubernetes/client-node';
import type { StaticPodStatus } from './static-pods.js';

export const MIRROR_ANNOTATION = 'kubernetes.io/config.mirror';

export function podKey(pod: V1Pod): string {
  return `${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}`;
}

export function isMirrorPod(pod: V1Pod): boolean {
  return pod.metadata?.annotations?.[MIRROR_ANNOTATION] !== undefined;
}

/** The pod's status says what runningPodStatus would: nothing left to report. */
export function reportedRunning(pod: V1Pod): boolean {
  const s = pod.status;
  return (
    s?.phase === 'Running' &&
    Boolean(s.podIP) &&
    (s.containerStatuses?.length ?? 0) === (pod.spec?.containers.length ?? 0) &&
    (s.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True')
  );
}

/** What kwok reports for a pod it runs: every container running and ready, init containers completed. */
export function runningPodStatus(pod: V1Pod, nodeIp: string, podIp: string): Record<string, unknown> {
  const now = new Date().toISOString();
  const startTime = pod.status?.startTime ? new Date(pod.status.startTime).toISOString() : now;
  const uid = pod.metadata?.uid ?? '';
  const running = (c: V1Container): V1ContainerStatus => ({
    name: c.name,
    image: c.image ?? '',
    imageID: '',
    containerID: containerId(`${uid}/${c.name}`),
    ready: true,
    started: true,
    restartCount: 0,
    state: { running: { startedAt: now as unknown as Date } },
  });
  return {
    phase: 'Running',
    conditions: conditions(true, '', now),
    hostIP: nodeIp,
    hostIPs: [{ ip: nodeIp }],
    podIP: podIp,
    podIPs: [{ ip: podIp }],
    startTime,
    containerStatuses: pod.spec!.containers.map(running),
    ...(pod.spec?.initContainers?.length
      ? {
          initContainerStatuses: pod.spec.initContainers.map((c) =>
            c.restartPolicy === 'Always'
              ? running(c) // a sidecar keeps running
              : {
                  ...running(c),
                  started: false,
                  state: { terminated: { exitCode: 0, reason: 'Completed', startedAt: startTime, finishedAt: startTime } },
                },
          ),
        }
      : {}),
  };
}

/** A static pod's status as the kubelet reports it on the mirror pod. */
export function mirrorPodStatus(s: StaticPodStatus, nodeIp: string): Record<string, unknown> {
  const everStarted = s.startedAt !== undefined || s.lastExit !== undefined;
  const since = (s.startedAt ?? s.lastExit?.at ?? new Date(0)).toISOString();
  const image = s.manifest.spec?.containers[0]?.image ?? '';
  const exit = s.lastExit;
  const state = s.pid !== undefined && s.startedAt
    ? { running: { startedAt: s.startedAt.toISOString() } }
    : { waiting: { reason: s.waiting?.reason ?? 'ContainerCreating', ...(s.waiting ? { message: s.waiting.message } : {}) } };
  const exitCode = exit ? (exit.code ?? 128 + (exit.signal ? osConstants.signals[exit.signal] : 0)) : 0;
  return {
    phase: everStarted ? 'Running' : 'Pending',
    conditions: conditions(s.ready, `containers with unready status: [${s.containerName}]`, since),
    hostIP: nodeIp,
    hostIPs: [{ ip: nodeIp }],
    podIP: nodeIp,
    podIPs: [{ ip: nodeIp }],
    ...(everStarted ? { startTime: since } : {}),
    containerStatuses: [
      {
        name: s.containerName,
        image,
        imageID: '',
        containerID: containerId(`${s.namespace}/${s.name}/${s.manifestHash}/${s.pid ?? s.restartCount}`),
        ready: s.ready,
        started: s.started,
        restartCount: s.restartCount,
        state,
        lastState: exit
          ? { terminated: { exitCode, ...(exit.signal ? { signal: osConstants.signals[exit.signal] } : {}), reason: exitCode === 0 ? 'Completed' : 'Error', finishedAt: exit.at.toISOString() } }
          : {},
      },
    ],
  };
}

/** How a container's run ended, as the runtime reports it. */
export interface ContainerTermination {
  exitCode: number;
  /** Completed, Error, StartError, ContainerStatusUnknown. */
  reason: string;
  message?: string;
  startedAt: Date;
  finishedAt: Date;
}

/** A process pod's single container as process-pods.ts keeps it; exactly one of running, waiting, terminated. */
export interface ProcessPodState {
  phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  /** When the stand-in took the pod in. */
  startTime: Date;
  /** When the state last changed: the conditions' transition time. */
  since: Date;
  restartCount: number;
  running?: { startedAt: Date };
  waiting?: { reason: string; message?: string };
  terminated?: ContainerTermination;
  /** The run before the current one. */
  lastTerminated?: ContainerTermination;
  /** A container was made (a run started or failed to start): it has an ID. */
  created: boolean;
}

/** A process pod's status as the kubelet reports a host-network pod of one container. */
export function processPodStatus(pod: V1Pod, s: ProcessPodState, nodeIp: string): Record<string, unknown> {
  const c = pod.spec!.containers[0]!;
  const terminal = s.phase === 'Succeeded' || s.phase === 'Failed';
  const ready = s.running !== undefined;
  const iso = (d: Date): string => d.toISOString();
  const termination = (t: ContainerTermination): Record<string, unknown> => ({
    terminated: {
      exitCode: t.exitCode,
      reason: t.reason,
      ...(t.message ? { message: t.message } : {}),
      startedAt: iso(t.startedAt),
      finishedAt: iso(t.finishedAt),
    },
  });
  const state = s.running
    ? { running: { startedAt: iso(s.running.startedAt) } }
    : s.terminated
      ? termination(s.terminated)
      : { waiting: { reason: s.waiting?.reason ?? 'ContainerCreating', ...(s.waiting?.message ? { message: s.waiting.message } : {}) } };
  const notReady = terminal
    ? { reason: 'PodCompleted', message: '' }
    : { reason: 'ContainersNotReady', message: `containers with unready status: [${c.name}]` };
  return {
    phase: s.phase,
    conditions: [
      condition('PodReadyToStartContainers', !terminal, iso(s.since)),
      condition('Initialized', true, iso(s.startTime)),
      condition('Ready', ready, iso(s.since), notReady),
      condition('ContainersReady', ready, iso(s.since), notReady),
      condition('PodScheduled', true, iso(s.startTime)),
    ],
    hostIP: nodeIp,
    hostIPs: [{ ip: nodeIp }],
    podIP: nodeIp,
    podIPs: [{ ip: nodeIp }],
    startTime: iso(s.startTime),
    containerStatuses: [
      {
        name: c.name,
        image: c.image ?? '',
        imageID: '',
        ...(s.created ? { containerID: containerId(`${pod.metadata?.uid ?? ''}/${c.name}/${s.restartCount}`) } : {}),
        ready,
        started: s.running !== undefined,
        restartCount: s.restartCount,
        state,
        lastState: s.lastTerminated ? termination(s.lastTerminated) : {},
      },
    ],
  };
}

function condition(type: string, ok: boolean, since: string, notOk?: { reason: string; message: string }): V1PodCondition {
  return {
    type,
    status: ok ? 'True' : 'False',
    lastProbeTime: null,
    lastTransitionTime: since,
    ...(ok || !notOk ? {} : { reason: notOk.reason, ...(notOk.message ? { message: notOk.message } : {}) }),
  } as unknown as V1PodCondition;
}

function conditions(ready: boolean, notReadyMessage: string, now: string): V1PodCondition[] {
  const notReady = { reason: 'ContainersNotReady', message: notReadyMessage };
  return [
    condition('PodReadyToStartContainers', true, now),
    condition('Initialized', true, now),
    condition('Ready', ready, now, notReady),
    condition('ContainersReady', ready, now, notReady),
    condition('PodScheduled', true, now),
  ];
}

function containerId(seed: string): string {
  return `capflow-stand-in://${createHash('sha256').update(seed).digest('hex')}`;
}
