/**
 * A stand-in for a bring-your-own host reached over SSH: a HostShell (src/hosts/shell.ts) that runs
 * each command locally with `bash -c`, so host-side modules (preparation, kubeadm, reset) can be
 * tested without sshd. It is NOT a sandbox; two things keep tests off the machine running them:
 *
 *   - PATH starts with `root`/usr/bin (what a command installed there) then `binDir` (fake tools:
 *     apt-get, systemctl, modprobe, ...), then the system's directories;
 *   - absolute paths under /etc, /usr/bin, /usr/lib, /sys and /var in the command text are rewritten
 *     into `root` (so `cat > /etc/x` writes <root>/etc/x). Content passed on stdin is not rewritten.
 *
 * Every call is recorded (the command as given, before rewriting, and whether it was mutating).
 *
 *   const shell = new LocalShell({ host: 'node-1', root, binDir, env: { STATE: dir } });
 */
import { spawn } from 'node:child_process';
import { HostCommandError, type CommandResult, type HostShell, type RunOptions } from '../../src/hosts/shell.js';

export interface LocalShellOptions {
  host?: string;
  /** Directory standing in for the host's /: absolute paths in commands are rewritten into it. */
  root: string;
  /** Directory of fake tools, first on PATH. */
  binDir: string;
  /** Extra environment for every command. */
  env?: Record<string, string>;
}

export interface LocalCall {
  command: string;
  mutating: boolean;
  stdin?: string;
}

const REWRITTEN = /(^|[\s='"(;|&>])\/(etc|usr\/bin|usr\/lib|sys|var)(?=\/)/g;

export class LocalShell implements HostShell {
  readonly host: string;
  readonly calls: LocalCall[] = [];

  constructor(private readonly opts: LocalShellOptions) {
    this.host = opts.host ?? 'local-host';
  }

  /** The command as it runs here: host paths moved under root. */
  localize(command: string): string {
    return command.replace(REWRITTEN, (_m, pre: string, dir: string) => `${pre}${this.opts.root}/${dir}`);
  }

  mutatingCalls(): LocalCall[] {
    return this.calls.filter((c) => c.mutating);
  }

  run(command: string, opts: RunOptions = {}): Promise<CommandResult> {
    const stdin = opts.stdin === undefined ? undefined : opts.stdin.toString();
    this.calls.push({ command, mutating: opts.mutating === true, ...(stdin !== undefined ? { stdin } : {}) });
    const env = {
      PATH: `${this.opts.root}/usr/bin:${this.opts.binDir}:/usr/bin:/bin:/usr/sbin:/sbin`,
      HOME: this.opts.root,
      LANG: 'C',
      ...this.opts.env,
    };
    return new Promise((resolve, reject) => {
      const child = spawn('bash', ['-c', this.localize(command)], { env, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        const result = { code: code ?? 128, stdout, stderr };
        if ((opts.okCodes ?? [0]).includes(result.code)) resolve(result);
        else reject(new HostCommandError(this.host, command, result));
      });
      // A command that does not read its stdin may exit first: EPIPE is no failure of its own.
      child.stdin.on('error', () => {});
      child.stdin.end(stdin ?? '');
    });
  }
}
