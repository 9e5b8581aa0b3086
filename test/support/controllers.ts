// The control plane's other two programs for tests that need workloads to roll out against envtest:
// kube-controller-manager (only the controllers asked for) and kube-scheduler, both from the test bed
// (`bash testbed/install.sh`), talking to envtest's admin kubeconfig, serving nothing (--secure-port=0).
//
//   const ctl = startControllers(env, { controllers: ['deployment', 'replicaset', 'job'] });
//   ...
//   await ctl.stop();

import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Envtest } from './envtest.js';
import { requireTool } from './tools.js';

export interface Controllers {
  /** The last lines of a component's log, for failure messages. */
  logTail(component: 'kube-controller-manager' | 'kube-scheduler', lines?: number): string;
  stop(): Promise<void>;
}

export interface ControllersOptions {
  /** kube-controller-manager's --controllers; default: deployment, replicaset, job. */
  controllers?: string[];
  /** Start kube-scheduler too (pods get nodes). Default true. */
  scheduler?: boolean;
}

export function startControllers(env: Envtest, opts: ControllersOptions = {}): Controllers {
  const logs = { 'kube-controller-manager': join(env.dir, 'kube-controller-manager.log'), 'kube-scheduler': join(env.dir, 'kube-scheduler.log') };
  const children: ChildProcess[] = [];
  const start = (name: keyof typeof logs, args: string[]): void => {
    const fd = openSync(logs[name], 'a');
    children.push(spawn(requireTool(name), args, { detached: true, stdio: ['ignore', fd, fd] }));
    closeSync(fd);
  };
  start('kube-controller-manager', [
    `--kubeconfig=${env.kubeconfigPath}`,
    `--controllers=${(opts.controllers ?? ['deployment', 'replicaset', 'job']).join(',')}`,
    '--use-service-account-credentials=false',
    '--leader-elect=false',
    '--secure-port=0',
    '--v=1',
  ]);
  if (opts.scheduler ?? true) {
    start('kube-scheduler', [`--kubeconfig=${env.kubeconfigPath}`, '--leader-elect=false', '--secure-port=0', '--v=1']);
  }
  const kill = (c: ChildProcess, sig: NodeJS.Signals): void => {
    if (c.exitCode !== null || c.signalCode !== null || c.pid === undefined) return;
    try {
      process.kill(-c.pid, sig);
    } catch {
      /* gone */
    }
  };
  const onExit = (): void => children.forEach((c) => kill(c, 'SIGKILL'));
  process.on('exit', onExit);
  return {
    logTail: (component, lines = 30) => {
      try {
        return readFileSync(logs[component], 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
      } catch {
        return '(no log)';
      }
    },
    async stop() {
      process.off('exit', onExit);
      await Promise.all(
        children.map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.exitCode !== null || c.signalCode !== null) return resolve();
              const t = setTimeout(() => kill(c, 'SIGKILL'), 5000);
              c.once('exit', () => {
                clearTimeout(t);
                resolve();
              });
              kill(c, 'SIGTERM');
            }),
        ),
      );
    },
  };
}
