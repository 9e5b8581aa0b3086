/**
 * Pod status as the kubelet stand-in reports it: kwok's Running for pods bound to the node, a
 * static pod's process state for its mirror pod, and a process pod's (process-pods.ts) own runs:
 * its one container's, or its init containers' and then kwok's Running for its containers.
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

/** One container the stand-in runs as a process; at most one of running, waiting, terminated (none: not started yet). */
export interface ContainerRun {
  restartCount: number;
  running?: { startedAt: Date };
  waiting?: { reason: string; message?: string };
  terminated?: ContainerTermination;
  /** The run before the current one. */
  lastTerminated?: ContainerTermination;
  /** A container was made (a run started or failed to start): it has an ID. */
  created: boolean;
}

/** A process pod as process-pods.ts keeps it. */
export interface ProcessPodState {
  phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  /** When the stand-in took the pod in. */
  startTime: Date;
  /** When the state last changed: the conditions' transition time. */
  since: Date;
  /** The containers run, in order: the pod's one container, or its init containers. */
  runs: ContainerRun[];
  /** The index in runs of the container running or next to run; runs.length once all completed. */
  step: number;
}

type NotOk = { reason: string; message: string };

/** A process pod's status as the kubelet reports a host-network pod of one container. */
export function processPodStatus(pod: V1Pod, s: ProcessPodState, nodeIp: string): Record<string, unknown> {
  const c = pod.spec!.containers[0]!;
  const terminal = s.phase === 'Succeeded' || s.phase === 'Failed';
  const ready = s.runs[0]!.running !== undefined;
  const notReady = terminal
    ? { reason: 'PodCompleted', message: '' }
    : { reason: 'ContainersNotReady', message: `containers with unready status: [${c.name}]` };
  return {
    ...processPodBasics(s, nodeIp, undefined, ready, notReady),
    containerStatuses: [containerRunStatus(pod, c, s.runs[0]!, ready, 'ContainerCreating')],
  };
}

/**
 * A host-network pod whose init containers run as processes: Pending while they run (Failed when
 * one fails under Never), then Running with its containers reported running as kwok's are.
 */
export function initPodStatus(pod: V1Pod, s: ProcessPodState, nodeIp: string): Record<string, unknown> {
  const inits = pod.spec!.initContainers!;
  const initContainerStatuses = inits.map((c, i) => {
    const r = s.runs[i]!;
    return containerRunStatus(pod, c, r, r.terminated?.exitCode === 0, 'PodInitializing');
  });
  if (s.step >= inits.length) return { ...runningPodStatus(pod, nodeIp, nodeIp), startTime: s.startTime.toISOString(), initContainerStatuses };
  const names = (cs: V1Container[]): string => cs.map((c) => c.name).join(' ');
  const notInitialized = { reason: 'ContainersNotInitialized', message: `containers with incomplete status: [${names(inits.slice(s.step))}]` };
  const notReady = s.phase === 'Failed'
    ? { reason: 'PodCompleted', message: '' }
    : { reason: 'ContainersNotReady', message: `containers with unready status: [${names(pod.spec!.containers)}]` };
  return {
    ...processPodBasics(s, nodeIp, notInitialized, false, notReady),
    initContainerStatuses,
    containerStatuses: pod.spec!.containers.map((c) => containerRunStatus(pod, c, { restartCount: 0, created: false }, false, 'PodInitializing')),
  };
}

/** Phase, conditions, the node's addresses (host network) and start time of a process pod. */
function processPodBasics(s: ProcessPodState, nodeIp: string, notInitialized: NotOk | undefined, ready: boolean, notReady: NotOk): Record<string, unknown> {
  const terminal = s.phase === 'Succeeded' || s.phase === 'Failed';
  const since = s.since.toISOString();
  const start = s.startTime.toISOString();
  return {
    phase: s.phase,
    conditions: [
      condition('PodReadyToStartContainers', !terminal, since),
      condition('Initialized', notInitialized === undefined, notInitialized ? since : start, notInitialized),
      condition('Ready', ready, since, notReady),
      condition('ContainersReady', ready, since, notReady),
      condition('PodScheduled', true, start),
    ],
    hostIP: nodeIp,
    hostIPs: [{ ip: nodeIp }],
    podIP: nodeIp,
    podIPs: [{ ip: nodeIp }],
    startTime: start,
  };
}

/** A container's status from its run; `notStarted` is the waiting reason before its first run. */
function containerRunStatus(pod: V1Pod, c: V1Container, r: ContainerRun, ready: boolean, notStarted: string): Record<string, unknown> {
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
  const state = r.running
    ? { running: { startedAt: iso(r.running.startedAt) } }
    : r.terminated
      ? termination(r.terminated)
      : { waiting: { reason: r.waiting?.reason ?? notStarted, ...(r.waiting?.message ? { message: r.waiting.message } : {}) } };
  return {
    name: c.name,
    image: c.image ?? '',
    imageID: '',
    ...(r.created ? { containerID: containerId(`${pod.metadata?.uid ?? ''}/${c.name}/${r.restartCount}`) } : {}),
    ready,
    started: r.running !== undefined,
    restartCount: r.restartCount,
    state,
    lastState: r.lastTerminated ? termination(r.lastTerminated) : {},
  };
}

function condition(type: string, ok: boolean, since: string, notOk?: NotOk): V1PodCondition {
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
