/**
 * Pod status as the kubelet stand-in reports it: kwok's Running for pods bound to the node, and a
 * static pod's process state for its mirror pod.
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

function conditions(ready: boolean, notReadyMessage: string, now: string): V1PodCondition[] {
  const c = (type: string, ok: boolean): V1PodCondition =>
    ({
      type,
      status: ok ? 'True' : 'False',
      lastProbeTime: null,
      lastTransitionTime: now,
      ...(ok ? {} : { reason: 'ContainersNotReady', message: notReadyMessage }),
    }) as unknown as V1PodCondition;
  return [c('PodReadyToStartContainers', true), c('Initialized', true), c('Ready', ready), c('ContainersReady', ready), c('PodScheduled', true)];
}

function containerId(seed: string): string {
  return `capflow-stand-in://${createHash('sha256').update(seed).digest('hex')}`;
}
