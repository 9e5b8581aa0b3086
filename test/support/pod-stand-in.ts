/**
 * A stand-in for the kubelet, for Argo Workflow pods only. No kubelet or container runtime can run
 * here, so this plays both for the pods Argo's real workflow controller creates:
 *
 * - it picks up every pod labelled `workflows.argoproj.io/workflow` in one namespace;
 * - it runs the `main` container's command and arguments (after Argo's `argoexec emissary --`
 *   prefix) from the executor image's runtime files, with the container's environment (values,
 *   `$(VAR)` references, Secret and ConfigMap keys, the downward API, envFrom), its volumes
 *   (Secret, ConfigMap, emptyDir, projected) mounted at their mountPaths, the service account's
 *   token where the kubelet puts it, as the pod's runAsUser/runAsGroup/fsGroup, with a read-only
 *   root when the container asks for one: each pod gets its own mount namespace (unshare, so the
 *   stand-in needs root);
 * - it reports what Argo's wait container and the kubelet would: the output parameters
 *   (`outputs.parameters[].valueFrom.path`, one trailing newline trimmed, `default` when the file is
 *   missing) and the exit code as a WorkflowTaskResult written with the pod's own service account
 *   token (so the chart's executor RBAC is exercised), then the pod's phase and container statuses.
 *
 * What it does not do: images other than the ones it is given (a pod of any other image waits in
 * ErrImagePull), init containers and sidecars of the template (Argo's own init and wait containers
 * are reported Completed), probes, resource limits, `argo stop` signals. A Secret volume or key that
 * is missing keeps the pod in ContainerCreating, as the kubelet would, until it appears.
 *
 * Mount points that do not exist on this machine (e.g. /var/run/secrets/kubernetes.io/serviceaccount)
 * are created empty on it (a mount namespace shares the file system, not its directories) and
 * removed again by stop(). It needs root: mount namespaces, bind mounts, setpriv.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { request as httpsRequest } from 'node:https';
import { chmodSync, chownSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { CoreV1Api, KubeConfig, type V1Container, type V1Pod, type V1Volume } from '@kubernetes/client-node';

/** An image's runtime files: what `docker run IMAGE` would find in its file system and ENV. */
export interface PodImage {
  /** Image references (repository, with or without tag) this folder stands for. */
  repositories: string[];
  /**
   * Folder holding the image's files. Each pod sees it read-only under the stand-in's own folder
   * (not where it is here: it may be under /tmp, which the pod's own /tmp hides); paths under `dir`
   * in `commands` and `env` are rewritten to that place.
   */
  dir: string;
  /** Commands on the image's PATH: name -> argv prefix (e.g. capflow -> [node, <dir>/app/capflow.mjs]). */
  commands: Record<string, string[]>;
  /** The image's ENV. */
  env: Record<string, string>;
}

export interface PodRun {
  pod: string;
  /** The workflow node the pod ran (annotation workflows.argoproj.io/node-id is the task result's name). */
  nodeId: string;
  argv: string[];
  exitCode?: number;
  startedAt: number;
  finishedAt?: number;
  /** The pod's combined stdout and stderr. */
  logFile: string;
}

export interface PodStandInOptions {
  kc: KubeConfig;
  namespace: string;
  /** https://127.0.0.1:<port>: what KUBERNETES_SERVICE_HOST/PORT point at. */
  server: string;
  /** PEM of the cluster CA (ca.crt beside the service account token). */
  caCert: string;
  images: PodImage[];
  /** Poll interval for new and deleted pods. Default 200 ms. */
  pollMs?: number;
}

const ARGO_WORKFLOW_LABEL = 'workflows.argoproj.io/workflow';
const NODE_ID_ANNOTATION = 'workflows.argoproj.io/node-id';
const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

interface Running {
  child?: ChildProcess;
  run?: PodRun;
  done: boolean;
  /** Why the pod cannot start yet (a missing Secret): retried. */
  waiting?: string;
}

interface OutputParameter {
  name: string;
  valueFrom?: { path?: string; default?: string };
}

class MissingObject extends Error {}

export class PodStandIn {
  private readonly core: CoreV1Api;
  private readonly base: string;
  private readonly pods = new Map<string, Running>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private polling: Promise<void> = Promise.resolve();
  readonly runs: PodRun[] = [];
  private readonly madeMountPoints = new Set<string>();

  constructor(private readonly o: PodStandInOptions) {
    this.core = o.kc.makeApiClient(CoreV1Api);
    // Outside /tmp: each pod gets its own /tmp, which would hide anything kept there.
    mkdirSync('/var/tmp', { recursive: true });
    this.base = mkdtempSync('/var/tmp/capflow-pods-');
    chmodSync(this.base, 0o755);
  }

  start(): this {
    const tick = (): void => {
      if (this.stopped) return;
      this.polling = this.poll()
        .catch((err: unknown) => console.error(`[pod stand-in] ${(err as Error).message}`))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(tick, this.o.pollMs ?? 200);
        });
    };
    tick();
    return this;
  }

  /** Pods it ran (in start order), with their argv and exit codes. */
  runsOf(workflow: string): PodRun[] {
    return this.runs.filter((r) => r.pod.startsWith(`${workflow}-`));
  }

  /** The log of the pod's last run (a retried pod keeps its name). */
  logOf(pod: string): string {
    const run = this.runs.filter((r) => r.pod === pod).pop();
    return run && existsSync(run.logFile) ? readFileSync(run.logFile, 'utf8') : '';
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.polling;
    const exits = [...this.pods.values()]
      .filter((p) => p.child && p.child.exitCode === null)
      .map((p) => new Promise((r) => (p.child!.once('exit', r), p.child!.kill('SIGKILL'))));
    await Promise.all(exits);
    rmSync(this.base, { recursive: true, force: true });
    // Mount points made on this machine (e.g. /var/run/capflow/git): gone again, deepest first, if
    // still empty, so nothing on this machine sees them after the tests.
    for (const dir of [...this.madeMountPoints].sort((a, b) => b.length - a.length)) {
      try {
        rmdirSync(dir);
      } catch {
        // not empty, or in use by another stand-in of this machine: leave it
      }
    }
  }

  /** Makes a mount point that does not exist here, remembering each folder it made. */
  private makeMountPoint(target: string): void {
    const first = mkdirSync(target, { recursive: true });
    if (first === undefined) return;
    for (let dir = target; dir.length >= first.length; dir = posix.dirname(dir)) this.madeMountPoints.add(dir);
  }

  private async poll(): Promise<void> {
    const list = await this.core.listNamespacedPod({ namespace: this.o.namespace, labelSelector: ARGO_WORKFLOW_LABEL });
    const seen = new Set<string>();
    for (const pod of list.items) {
      // By UID: `argo retry` deletes a failed pod and the controller makes a new one of the same name.
      const name = pod.metadata!.name!;
      const uid = pod.metadata!.uid!;
      seen.add(uid);
      const state = this.pods.get(uid);
      if (!state) {
        this.pods.set(uid, { done: false });
        void this.startPod(pod).catch((err: unknown) => console.error(`[pod stand-in] ${name}: ${(err as Error).stack}`));
      } else if (state.waiting && !state.child && !state.done) {
        void this.startPod(pod).catch((err: unknown) => console.error(`[pod stand-in] ${name}: ${(err as Error).stack}`));
      }
    }
    // A pod deleted while it runs (workflow deleted, pod GC, retry of a running node): kill it.
    for (const [uid, state] of this.pods) {
      if (!seen.has(uid) && state.child && state.child.exitCode === null) state.child.kill('SIGKILL');
    }
  }

  private image(ref: string | undefined): PodImage | undefined {
    if (!ref) return undefined;
    const repo = ref.replace(/@.*$/, '').replace(/:[^/:]+$/, '');
    return this.o.images.find((i) => i.repositories.includes(repo) || i.repositories.includes(ref));
  }

  private async startPod(pod: V1Pod): Promise<void> {
    const name = pod.metadata!.name!;
    const state = this.pods.get(pod.metadata!.uid!)!;
    const main = pod.spec!.containers.find((c) => c.name === 'main');
    if (!main) return this.finishPod(pod, state, 1, 'the pod has no main container (not an Argo container template)');
    const image = this.image(main.image);
    if (!image) {
      state.waiting = 'ErrImagePull';
      return this.setWaiting(pod, 'ErrImagePull', `the pod stand-in has no files for image ${main.image}`);
    }
    const podDir = join(this.base, `${name}-${pod.metadata!.uid!.slice(0, 8)}`);
    let mounts: Array<{ source: string; target: string; readOnly: boolean }>;
    let env: Record<string, string>;
    try {
      rmSync(podDir, { recursive: true, force: true });
      mkdirSync(podDir, { recursive: true, mode: 0o755 });
      env = await this.environment(pod, main, image);
      mounts = await this.volumes(pod, main, podDir);
    } catch (err) {
      if (!(err instanceof MissingObject)) {
        // what the stand-in cannot play (a hostPath volume, say): shown as the kubelet shows a bad
        // container config, on the pod and so on the Workflow's node
        state.done = true;
        return this.setWaiting(pod, 'CreateContainerConfigError', (err as Error).message);
      }
      state.waiting = err.message;
      return this.setWaiting(pod, 'ContainerCreating', err.message);
    }
    state.waiting = undefined;

    const imageAt = join(this.base, 'images', String(this.o.images.indexOf(image)));
    mkdirSync(imageAt, { recursive: true });
    const inPod = (s: string): string => (s === image.dir || s.startsWith(`${image.dir}/`) ? imageAt + s.slice(image.dir.length) : s);
    for (const [k, v] of Object.entries(env)) env[k] = inPod(v);
    const argv = mainArgv(main);
    const [cmd, ...args] = argv;
    const resolved = image.commands[cmd!] ? [...image.commands[cmd!]!.map(inPod), ...args] : argv;
    const sc = { ...pod.spec!.securityContext, ...main.securityContext } as { runAsUser?: number; runAsGroup?: number; readOnlyRootFilesystem?: boolean };
    const fsGroup = pod.spec!.securityContext?.fsGroup;
    const uid = sc.runAsUser ?? 0;
    const gid = sc.runAsGroup ?? uid;

    // The image's files, then /tmp: the container's writable layer (read-only with
    // readOnlyRootFilesystem) unless a volume is mounted there.
    const all = [{ source: image.dir, target: imageAt, readOnly: true }, ...mounts];
    if (!all.some((m) => m.target === '/tmp')) {
      const layer = join(podDir, 'layer-tmp');
      mkdirSync(layer, { mode: 0o1777 });
      chmodSync(layer, 0o1777);
      all.push({ source: layer, target: '/tmp', readOnly: sc.readOnlyRootFilesystem === true });
    }
    // Shallow mount points first; /tmp after anything whose source lives under /tmp.
    all.sort((a, b) => (a.target === '/tmp' ? 1 : 0) - (b.target === '/tmp' ? 1 : 0) || a.target.split('/').length - b.target.split('/').length);
    for (const m of all) this.makeMountPoint(m.target);
    const script = [
      'set -e',
      ...all.flatMap((m) => [
        `mount --bind ${sh(m.source)} ${sh(m.target)}`,
        ...(m.readOnly ? [`mount -o remount,bind,ro ${sh(m.target)}`] : []),
      ]),
      `cd ${sh(main.workingDir ?? '/')}`,
      `exec /usr/bin/setpriv --reuid=${uid} --regid=${gid} ${fsGroup !== undefined ? `--groups=${fsGroup}` : '--clear-groups'} --no-new-privs -- "$@"`,
    ].join('\n');
    const scriptPath = join(podDir, 'start.sh');
    writeFileSync(scriptPath, script);

    const logFile = join(podDir, 'log');
    const log = createWriteStream(logFile);
    const run: PodRun = { pod: name, nodeId: pod.metadata!.annotations?.[NODE_ID_ANNOTATION] ?? name, argv, startedAt: Date.now(), logFile };
    this.runs.push(run);
    state.run = run;
    await this.setRunning(pod);
    const child = spawn('/usr/bin/unshare', ['--mount', '--propagation', 'private', '--', '/bin/sh', scriptPath, ...resolved], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    state.child = child;
    child.stdout.pipe(log, { end: false });
    child.stderr.pipe(log, { end: false });
    const exitCode = await new Promise<number>((resolve) => {
      child.on('error', () => resolve(127));
      child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 + (signalNumber(signal) ?? 9) : 1)));
    });
    await new Promise<void>((r) => log.end(r));
    run.exitCode = exitCode;
    run.finishedAt = Date.now();
    await this.finishPod(pod, state, exitCode, undefined, all);
  }

  /** The container's environment as the kubelet builds it, over the image's ENV. */
  private async environment(pod: V1Pod, c: V1Container, image: PodImage): Promise<Record<string, string>> {
    const ns = this.o.namespace;
    const server = new URL(this.o.server);
    const env: Record<string, string> = {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOSTNAME: pod.metadata!.name!,
      ...image.env,
      KUBERNETES_SERVICE_HOST: server.hostname,
      KUBERNETES_SERVICE_PORT: server.port,
    };
    for (const from of c.envFrom ?? []) {
      const data = from.secretRef
        ? await this.secretData(from.secretRef.name!, from.secretRef.optional)
        : from.configMapRef
          ? await this.configMapData(from.configMapRef.name!, from.configMapRef.optional)
          : {};
      for (const [k, v] of Object.entries(data)) env[`${from.prefix ?? ''}${k}`] = v;
    }
    for (const e of c.env ?? []) {
      if (e.value !== undefined) {
        env[e.name] = e.value.replace(/\$\((\w+)\)/g, (ref, v: string) => env[v] ?? ref);
        continue;
      }
      const vf = e.valueFrom;
      if (!vf) {
        env[e.name] = '';
      } else if (vf.secretKeyRef) {
        const data = await this.secretData(vf.secretKeyRef.name!, vf.secretKeyRef.optional);
        const value = data[vf.secretKeyRef.key];
        if (value === undefined && !vf.secretKeyRef.optional) throw new MissingObject(`couldn't find key ${vf.secretKeyRef.key} in Secret ${ns}/${vf.secretKeyRef.name}`);
        if (value !== undefined) env[e.name] = value;
      } else if (vf.configMapKeyRef) {
        const data = await this.configMapData(vf.configMapKeyRef.name!, vf.configMapKeyRef.optional);
        const value = data[vf.configMapKeyRef.key];
        if (value === undefined && !vf.configMapKeyRef.optional) throw new MissingObject(`couldn't find key ${vf.configMapKeyRef.key} in ConfigMap ${ns}/${vf.configMapKeyRef.name}`);
        if (value !== undefined) env[e.name] = value;
      } else if (vf.fieldRef) {
        env[e.name] = fieldValue(pod, vf.fieldRef.fieldPath);
      }
    }
    return env;
  }

  /** Host folders for the container's volumeMounts (and the service account token). */
  private async volumes(pod: V1Pod, c: V1Container, podDir: string): Promise<Array<{ source: string; target: string; readOnly: boolean }>> {
    const fsGroup = pod.spec!.securityContext?.fsGroup;
    const volumes = new Map<string, V1Volume>((pod.spec!.volumes ?? []).map((v) => [v.name, v]));
    const out: Array<{ source: string; target: string; readOnly: boolean }> = [];
    const made = new Map<string, string>();
    const materialize = async (v: V1Volume): Promise<string> => {
      const dir = join(podDir, 'volumes', v.name);
      mkdirSync(dir, { recursive: true });
      if (v.emptyDir) {
        chmodSync(dir, 0o777);
      } else if (v.secret) {
        const data = await this.secretData(v.secret.secretName!, v.secret.optional, true);
        writeKeys(dir, data, v.secret.items, v.secret.defaultMode ?? 0o644, fsGroup);
      } else if (v.configMap) {
        const data = await this.configMapData(v.configMap.name!, v.configMap.optional, true);
        writeKeys(dir, data, v.configMap.items, v.configMap.defaultMode ?? 0o644, fsGroup);
      } else if (v.projected) {
        for (const s of v.projected.sources ?? []) {
          if (s.serviceAccountToken) {
            const token = await this.token(pod, s.serviceAccountToken.expirationSeconds ?? 3600, s.serviceAccountToken.audience);
            writeKeys(dir, { [s.serviceAccountToken.path]: token }, undefined, v.projected.defaultMode ?? 0o644, fsGroup);
          } else if (s.secret) {
            writeKeys(dir, await this.secretData(s.secret.name!, s.secret.optional, true), s.secret.items, v.projected.defaultMode ?? 0o644, fsGroup);
          } else if (s.configMap) {
            writeKeys(dir, await this.configMapData(s.configMap.name!, s.configMap.optional, true), s.configMap.items, v.projected.defaultMode ?? 0o644, fsGroup);
          }
        }
      } else {
        throw new Error(`volume ${v.name}: only emptyDir, secret, configMap and projected volumes are played by the pod stand-in`);
      }
      chmodSync(dir, v.emptyDir ? 0o777 : 0o755);
      return dir;
    };
    for (const m of c.volumeMounts ?? []) {
      const v = volumes.get(m.name);
      if (!v) throw new Error(`volumeMount ${m.name}: the pod has no such volume`);
      let dir = made.get(v.name);
      if (!dir) made.set(v.name, (dir = await materialize(v)));
      out.push({ source: m.subPath ? join(dir, m.subPath) : dir, target: posix.normalize(m.mountPath), readOnly: m.readOnly === true || !v.emptyDir });
    }
    // The token the ServiceAccount admission plugin would have projected (it is off in the test
    // bed's API server), unless the pod opts out.
    if (pod.spec!.automountServiceAccountToken !== false && !out.some((m) => m.target === SA_DIR)) {
      const dir = join(podDir, 'serviceaccount');
      mkdirSync(dir, { mode: 0o755 });
      const token = await this.token(pod, 3600);
      writeKeys(dir, { token, 'ca.crt': this.o.caCert, namespace: this.o.namespace }, undefined, 0o644, fsGroup);
      out.push({ source: dir, target: SA_DIR, readOnly: true });
    }
    return out;
  }

  private async token(pod: V1Pod, expirationSeconds: number, audience?: string): Promise<string> {
    const sa = pod.spec!.serviceAccountName ?? 'default';
    try {
      await this.core.readNamespacedServiceAccount({ name: sa, namespace: this.o.namespace });
    } catch {
      throw new MissingObject(`serviceaccount ${this.o.namespace}/${sa} not found`);
    }
    const res = await this.core.createNamespacedServiceAccountToken({
      name: sa,
      namespace: this.o.namespace,
      body: { spec: { expirationSeconds: Math.max(600, expirationSeconds), audiences: audience ? [audience] : [], boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: pod.metadata!.name!, uid: pod.metadata!.uid! } } },
    });
    return res.status!.token;
  }

  private async secretData(name: string, optional?: boolean, forVolume = false): Promise<Record<string, string>> {
    try {
      const s = await this.core.readNamespacedSecret({ name, namespace: this.o.namespace });
      const out: Record<string, string> = {};
      for (const [k, v] of Object.entries(s.data ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
      return out;
    } catch (err) {
      if (optional) return {};
      throw new MissingObject(`${forVolume ? 'MountVolume.SetUp failed: ' : ''}secret "${name}" not found (${(err as Error).message.split('\n')[0]})`);
    }
  }

  private async configMapData(name: string, optional?: boolean, forVolume = false): Promise<Record<string, string>> {
    try {
      const cm = await this.core.readNamespacedConfigMap({ name, namespace: this.o.namespace });
      return { ...(cm.data ?? {}) };
    } catch {
      if (optional) return {};
      throw new MissingObject(`${forVolume ? 'MountVolume.SetUp failed: ' : ''}configmap "${name}" not found`);
    }
  }

  private async mergePatchStatus(pod: V1Pod, status: Record<string, unknown>): Promise<void> {
    const res = await kubeRequest(this.o.kc, 'PATCH', `/api/v1/namespaces/${this.o.namespace}/pods/${pod.metadata!.name}/status`, { status }, 'application/merge-patch+json');
    if (res.status !== 200 && res.status !== 404) throw new Error(`patch pod ${pod.metadata!.name} status: HTTP ${res.status} ${res.text}`);
  }

  private async setWaiting(pod: V1Pod, reason: string, message: string): Promise<void> {
    await this.mergePatchStatus(pod, {
      phase: 'Pending',
      conditions: [{ type: 'PodScheduled', status: 'True' }, { type: 'Ready', status: 'False', reason: 'ContainersNotReady' }],
      containerStatuses: pod.spec!.containers.map((c) => ({ name: c.name, image: c.image, imageID: '', ready: false, restartCount: 0, state: { waiting: { reason, message } } })),
    });
  }

  private async setRunning(pod: V1Pod): Promise<void> {
    const now = new Date().toISOString();
    await this.mergePatchStatus(pod, {
      phase: 'Running',
      startTime: now,
      podIP: '127.0.0.1',
      hostIP: '127.0.0.1',
      conditions: [{ type: 'PodScheduled', status: 'True' }, { type: 'Initialized', status: 'True' }, { type: 'Ready', status: 'True' }],
      initContainerStatuses: (pod.spec!.initContainers ?? []).map((c) => terminated(c, 0, 'Completed', now)),
      containerStatuses: pod.spec!.containers.map((c) => ({ name: c.name, image: c.image, imageID: '', ready: true, started: true, restartCount: 0, state: { running: { startedAt: now } } })),
    });
  }

  /** Reports the outputs (as the wait container does) and the pod's end (as the kubelet does). */
  private async finishPod(pod: V1Pod, state: Running, exitCode: number, failure?: string, mounts: Array<{ source: string; target: string }> = []): Promise<void> {
    state.done = true;
    const name = pod.metadata!.name!;
    const nodeId = pod.metadata!.annotations?.[NODE_ID_ANNOTATION] ?? name;
    let waitExit = 0;
    let waitMessage: string | undefined = failure;
    const parameters: Array<{ name: string; value: string }> = [];
    for (const p of outputParameters(pod)) {
      if (!p.valueFrom?.path) continue;
      const host = hostPath(mounts, p.valueFrom.path);
      if (host && existsSync(host)) {
        parameters.push({ name: p.name, value: readFileSync(host, 'utf8').replace(/\n$/, '') });
      } else if (p.valueFrom.default !== undefined) {
        parameters.push({ name: p.name, value: p.valueFrom.default });
      } else if (exitCode === 0) {
        waitExit = 1;
        waitMessage = `open ${p.valueFrom.path}: no such file or directory`;
      }
    }
    const workflow = pod.metadata!.labels![ARGO_WORKFLOW_LABEL]!;
    const owner = pod.metadata!.ownerReferences?.find((r) => r.kind === 'Workflow');
    const result = {
      apiVersion: 'argoproj.io/v1alpha1',
      kind: 'WorkflowTaskResult',
      metadata: {
        name: nodeId,
        labels: { [ARGO_WORKFLOW_LABEL]: workflow, 'workflows.argoproj.io/report-outputs-completed': 'true' },
        ...(owner ? { ownerReferences: [{ apiVersion: owner.apiVersion, kind: owner.kind, name: owner.name, uid: owner.uid }] } : {}),
      },
      outputs: { ...(parameters.length ? { parameters } : {}), exitCode: String(exitCode) },
      ...(waitMessage ? { message: waitMessage } : {}),
    };
    // As the pod's own service account: the chart's executor Role must allow it.
    const saKc = new KubeConfig();
    saKc.loadFromClusterAndUser(
      { name: 'in-cluster', server: this.o.server, caData: Buffer.from(this.o.caCert).toString('base64'), skipTLSVerify: false },
      { name: 'sa', token: await this.token(pod, 600) },
    );
    const results = `/apis/argoproj.io/v1alpha1/namespaces/${this.o.namespace}/workflowtaskresults`;
    let res = await kubeRequest(saKc, 'POST', results, result);
    if (res.status === 409) {
      res = await kubeRequest(saKc, 'PATCH', `${results}/${nodeId}`, { metadata: { labels: result.metadata.labels }, outputs: result.outputs }, 'application/merge-patch+json');
    }
    if (res.status !== 201 && res.status !== 200) throw new Error(`writing WorkflowTaskResult ${nodeId} as the pod's service account: HTTP ${res.status} ${res.text}`);
    const now = new Date().toISOString();
    const main = pod.spec!.containers.find((c) => c.name === 'main');
    const failed = exitCode !== 0 || waitExit !== 0;
    await this.mergePatchStatus(pod, {
      phase: failed ? 'Failed' : 'Succeeded',
      conditions: [{ type: 'PodScheduled', status: 'True' }, { type: 'Initialized', status: 'True' }, { type: 'Ready', status: 'False', reason: 'PodCompleted' }],
      initContainerStatuses: (pod.spec!.initContainers ?? []).map((c) => terminated(c, 0, 'Completed', now)),
      containerStatuses: pod.spec!.containers.map((c) =>
        c.name === 'wait'
          ? terminated(c, waitExit, waitExit ? 'Error' : 'Completed', now, waitExit ? waitMessage : undefined)
          : terminated(c, c === main ? exitCode : 0, (c === main ? exitCode : 0) ? 'Error' : 'Completed', now, c === main ? failure : undefined),
      ),
    });
  }
}

function terminated(c: V1Container, exitCode: number, reason: string, at: string, message?: string): Record<string, unknown> {
  return {
    name: c.name,
    image: c.image,
    imageID: '',
    ready: false,
    started: false,
    restartCount: 0,
    state: { terminated: { exitCode, reason, ...(message ? { message } : {}), startedAt: at, finishedAt: at } },
  };
}

/** The main container's own command: Argo's emissary runs `argoexec emissary [opts] -- CMD ARGS`. */
export function mainArgv(c: V1Container): string[] {
  const argv = [...(c.command ?? []), ...(c.args ?? [])];
  if (argv[0]?.endsWith('/argoexec') && argv[1] === 'emissary') {
    const i = argv.indexOf('--');
    return i >= 0 ? argv.slice(i + 1) : [];
  }
  return argv;
}

function outputParameters(pod: V1Pod): OutputParameter[] {
  const holders = [...(pod.spec!.initContainers ?? []), ...pod.spec!.containers];
  for (const c of holders) {
    const t = c.env?.find((e) => e.name === 'ARGO_TEMPLATE')?.value;
    if (t) return ((JSON.parse(t) as { outputs?: { parameters?: OutputParameter[] } }).outputs?.parameters ?? []);
  }
  return [];
}

/** Where a path inside the pod lives on this machine: the deepest mount that covers it. */
function hostPath(mounts: Array<{ source: string; target: string }>, path: string): string | undefined {
  const p = posix.normalize(path);
  const m = [...mounts].sort((a, b) => b.target.length - a.target.length).find((x) => p === x.target || p.startsWith(`${x.target.replace(/\/$/, '')}/`));
  return m ? join(m.source, posix.relative(m.target, p)) : undefined;
}

function writeKeys(dir: string, data: Record<string, string>, items: Array<{ key: string; path: string; mode?: number }> | undefined, mode: number, fsGroup?: number): void {
  const entries = items ? items.filter((i) => data[i.key] !== undefined).map((i) => [i.path, data[i.key]!, i.mode ?? mode] as const) : Object.entries(data).map(([k, v]) => [k, v, mode] as const);
  for (const [path, value, m] of entries) {
    const file = join(dir, path);
    mkdirSync(join(file, '..'), { recursive: true });
    writeFileSync(file, value, { mode: m });
    chmodSync(file, m);
    if (fsGroup !== undefined) chownSync(file, 0, fsGroup);
  }
}

function fieldValue(pod: V1Pod, path: string): string {
  const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (m) return (m[1] === 'labels' ? pod.metadata!.labels : pod.metadata!.annotations)?.[m[2]!] ?? '';
  switch (path) {
    case 'metadata.name':
      return pod.metadata!.name!;
    case 'metadata.namespace':
      return pod.metadata!.namespace!;
    case 'metadata.uid':
      return pod.metadata!.uid!;
    case 'spec.serviceAccountName':
      return pod.spec!.serviceAccountName ?? 'default';
    case 'spec.nodeName':
      return pod.spec!.nodeName ?? 'pod-stand-in';
    case 'status.podIP':
    case 'status.hostIP':
      return '127.0.0.1';
    default:
      return '';
  }
}

function signalNumber(signal: NodeJS.Signals): number | undefined {
  return ({ SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[signal];
}

const sh = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** One request to the API server with the kubeconfig's credentials; the answer's status and text. */
async function kubeRequest(kc: KubeConfig, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; text: string }> {
  const server = new URL(kc.getCurrentCluster()!.server);
  const opts: { method: string; hostname: string; port: string; path: string; headers: Record<string, string> } = {
    method,
    hostname: server.hostname,
    port: server.port,
    path,
    headers: { accept: 'application/json', ...(body !== undefined ? { 'content-type': contentType } : {}) },
  };
  await kc.applyToHTTPSOptions(opts);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(opts, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}
