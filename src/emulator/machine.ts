/**
 * One emulated instance, seen from the host: its directory, its namespaces and its agent process.
 * start() plugs the machine into its VPC and starts the agent (src/emulator/machine-agent.ts) inside
 * the machine's network namespace and a new mount and UTS namespace; stop() ends every process of
 * the machine, deletes its namespace and removes its directory (the overlay layers go with the mount
 * namespace, which ends with its last process).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { attachMachine, deleteNetns, pidsIn, type VpcNetwork } from './network.js';
import { MACHINE_PATH, type MachineConfig } from './machine-config.js';

export interface MachineOptions {
  config: MachineConfig;
  userData: Buffer;
  vpc: VpcNetwork;
  netns: string;
  /** The bridge side of the machine's veth (at most 15 characters). */
  vethName: string;
  agentEntry: string;
  /** Keep the machine's directory after stop (to read its logs after a failed test). */
  keepFiles?: boolean;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class Machine {
  private agent: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private stopping = false;
  /** The agent's own pid once its disk layers are mounted (undefined: it exited first). */
  private ready: Promise<number | undefined> = Promise.resolve(undefined);
  readonly startedAt = Date.now();

  constructor(readonly options: MachineOptions) {}

  get instanceId(): string {
    return this.options.config.instanceId;
  }
  get dir(): string {
    return this.options.config.machineDir;
  }
  get privateIp(): string {
    return this.options.config.privateIp;
  }
  get running(): boolean {
    return this.agent !== undefined && this.agent.exitCode === null && this.agent.signalCode === null;
  }
  get pid(): number | undefined {
    return this.agent?.pid;
  }

  async start(): Promise<void> {
    const { config } = this.options;
    mkdirSync(config.machineDir, { recursive: true });
    writeFileSync(join(config.machineDir, 'machine.json'), JSON.stringify(config, null, 2));
    writeFileSync(join(config.machineDir, 'user-data'), this.options.userData, { mode: 0o600 });
    await attachMachine(this.options.vpc, this.options.netns, this.options.vethName, config.privateIp);
    const logFd = openSync(join(config.machineDir, 'agent.log'), 'a');
    try {
      const agent = spawn(
        'ip',
        ['netns', 'exec', this.options.netns, 'unshare', '--mount', '--uts', '--propagation', 'private', process.execPath, this.options.agentEntry, join(config.machineDir, 'machine.json')],
        { stdio: ['ignore', logFd, logFd, 'ipc'], detached: true },
      );
      this.agent = agent;
      this.ready = new Promise((resolve) => {
        agent.on('message', (m: { type?: string; pid?: number }) => {
          if (m?.type === 'ready' && m.pid) resolve(m.pid);
        });
        agent.once('exit', () => resolve(undefined));
      });
      this.exited = new Promise((resolve) =>
        agent.once('exit', (code, signal) => {
          // a crash (every process killed) is what the boot log of a real instance would end with
          if (!this.stopping) appendFileSync(join(config.machineDir, 'boot.log'), `${new Date().toISOString()} machine: the agent exited (${signal ?? `code ${code}`}); the instance is down until it is terminated\n`);
          resolve();
        }),
      );
      agent.once('error', () => undefined);
      agent.unref();
      agent.channel?.unref();
    } finally {
      closeSync(logFd);
    }
  }

  /** Replaces the machine's load balancer names in its /etc/hosts. */
  setHosts(hosts: Record<string, string>): void {
    if (this.running && this.agent?.connected) this.agent.send({ type: 'hosts', hosts });
  }

  /** The machine's boot log (the agent's lines, cloud-init's and the commands' output). */
  bootLog(): string {
    const file = join(this.dir, 'boot.log');
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  }

  /**
   * Runs a command inside the machine (its network, mount and UTS namespaces), as root on the
   * instance. Waits until the machine's disk layers are in place: entering it earlier would write
   * to the host's own directories.
   */
  async exec(argv: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const pid = await Promise.race([this.ready, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), timeoutMs).unref())]);
    if (pid === undefined || !this.running) return { code: 255, stdout: '', stderr: `machine ${this.instanceId} is not running` };
    return new Promise((resolve) => {
      const child = spawn('nsenter', ['--target', String(pid), '--mount', '--uts', '--net', '--', 'env', `PATH=${MACHINE_PATH}`, 'HOME=/root', ...argv], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.once('close', (code) => {
        clearTimeout(timer);
        resolve({ code: code ?? 255, stdout, stderr });
      });
      child.stdin.on('error', () => undefined);
      child.stdin.end(opts.input ?? '');
    });
  }

  /** Stops every process of the machine, deletes its namespace and (unless kept) its directory. */
  async stop(): Promise<void> {
    this.stopping = true;
    const agent = this.agent;
    if (agent?.pid !== undefined && this.running) {
      try {
        process.kill(-agent.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
      await Promise.race([this.exited, new Promise((resolve) => setTimeout(resolve, 12_000))]);
    }
    // whatever is still in the machine's network namespace (static pods, stragglers) ends now
    for (let round = 0; round < 20; round++) {
      const pids = await pidsIn(this.options.netns);
      if (pids.length === 0) break;
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await deleteNetns(this.options.netns);
    if (!this.options.keepFiles) rmSync(this.dir, { recursive: true, force: true });
  }
}
