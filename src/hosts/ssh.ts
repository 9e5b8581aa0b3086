/**
 * The SSH transport to bring-your-own hosts (ssh2). Trust first: the host key must match the one
 * pinned in the inventory (an OpenSSH key line or a SHA256 fingerprint) before any authentication
 * is tried; a host listed with `trustOnFirstUse` is accepted with the key it shows, which is
 * reported so that it can be pinned in Git. Connections may go through a jump host (verified the
 * same way), are bounded by a connect timeout and kept alive so a host that drops is noticed within
 * seconds; each command has its own deadline, runs as root (through `sudo -n` for another login
 * user), is logged with its exit code (secrets redacted) and has its output streamed into the log.
 */
import { createHash } from 'node:crypto';
import { Client, type ClientChannel, type ConnectConfig } from 'ssh2';
import { ConflictError, InputError, TransientError, isCapflowError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { redactString } from '../core/redact.js';
import { HostCommandError, shq, type CommandResult, type HostShell, type RunOptions } from './shell.js';

export const DEFAULT_CONNECT_TIMEOUT_MS = 20_000;
export const DEFAULT_COMMAND_TIMEOUT_MS = 15 * 60_000;
/** Keepalives every 5 s, three unanswered end the connection: a dropped host fails its command in ~15 s. */
const KEEPALIVE_MS = 5000;
const KEEPALIVE_MAX = 3;
/** At most this much of a command's output is kept for its result (the log gets all of it). */
const OUTPUT_LIMIT = 4 << 20;

export interface SshTarget {
  /** The inventory's name for the host (messages, logs). */
  name: string;
  address: string;
  port: number;
  user: string;
  /** An OpenSSH public key line or `SHA256:<base64>`; absent only with trustOnFirstUse. */
  hostKey?: string;
  trustOnFirstUse?: boolean;
  /** Where the host is written down (`hosts.yaml:12:5`), for the messages that ask for a Git change. */
  where?: string;
}

export interface SshOptions {
  /** The login key (OpenSSH or PEM, no passphrase). */
  privateKey: string;
  jumpHost?: SshTarget;
  connectTimeoutMs?: number;
  commandTimeoutMs?: number;
  log: Logger;
  signal?: AbortSignal;
}

/** A host key pinned in the inventory. */
export type HostKeyPin = { kind: 'key'; type: string; blob: Buffer } | { kind: 'fingerprint'; sha256: string };

/** The pin of an inventory's hostKey; undefined when it is neither form (the spec checks say where). */
export function parseHostKeyPin(text: string): HostKeyPin | undefined {
  const fingerprint = /^SHA256:([A-Za-z0-9+/]{43})=?$/.exec(text.trim());
  if (fingerprint) return { kind: 'fingerprint', sha256: fingerprint[1]! };
  const [type, b64] = text.trim().split(/\s+/);
  if (!type || !b64 || !/^[A-Za-z0-9+/]+={0,3}$/.test(b64)) return undefined;
  const blob = Buffer.from(b64, 'base64');
  return keyTypeOf(blob) === type ? { kind: 'key', type, blob } : undefined;
}

/** `SHA256:<base64, unpadded>` of a key blob, as `ssh-keygen -lf` prints it. */
export function fingerprintOf(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** The key type a wire-format key blob starts with (`ssh-ed25519`). */
export function keyTypeOf(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const n = blob.readUInt32BE(0);
  return n > 0 && n < 64 && blob.length >= 4 + n ? blob.subarray(4, 4 + n).toString('latin1') : undefined;
}

/** The OpenSSH line of a key blob: what to pin. */
export function keyLineOf(blob: Buffer): string {
  return `${keyTypeOf(blob) ?? 'unknown'} ${blob.toString('base64')}`;
}

function pinMatches(pin: HostKeyPin, blob: Buffer): boolean {
  return pin.kind === 'key' ? pin.blob.equals(blob) : fingerprintOf(blob) === `SHA256:${pin.sha256}`;
}

/** What a host showed when it was trusted on first use: the change to make in Git. */
export interface KeySeen {
  host: string;
  where?: string;
  keyLine: string;
  fingerprint: string;
}

/** One connection to one host; run() commands on it. */
export class SshHost implements HostShell {
  readonly counts = { mutating: 0, read: 0 };

  private constructor(
    private readonly client: Client,
    private readonly jump: Client | undefined,
    private readonly target: SshTarget,
    private readonly o: SshOptions,
    /** The key the host showed, when it was trusted on first use. */
    readonly keySeen: KeySeen | undefined,
  ) {}

  get host(): string {
    return this.target.name;
  }

  static async connect(target: SshTarget, o: SshOptions): Promise<SshHost> {
    let jump: Client | undefined;
    try {
      let sock: ConnectConfig['sock'];
      if (o.jumpHost) {
        jump = (await open(o.jumpHost, o, undefined)).client;
        sock = await forward(jump, o.jumpHost, target);
      }
      const { client, keySeen } = await open(target, o, sock);
      if (keySeen) {
        o.log.warn(`Host ${target.name}: trusted the key it showed on first use (${keySeen.fingerprint}); pin it in Git`, {
          host: target.name,
          suggestion: `${target.where ? `${target.where}: ` : ''}hostKey: ${keySeen.keyLine}`,
        });
      }
      return new SshHost(client, jump, target, o, keySeen);
    } catch (err) {
      jump?.end();
      throw err;
    }
  }

  async run(command: string, opts: RunOptions = {}): Promise<CommandResult> {
    const shown = redactAll(command, opts.secrets).split('\n')[0]!.slice(0, 240);
    const started = Date.now();
    const result = await this.exec(command, opts, shown);
    if (opts.mutating) this.counts.mutating += 1;
    else this.counts.read += 1;
    const ok = (opts.okCodes ?? [0]).includes(result.code);
    this.o.log[ok ? (opts.mutating ? 'info' : 'debug') : 'warn'](`${this.target.name}$ ${shown}`, { host: this.target.name, exit: result.code, ms: Date.now() - started, ...(opts.mutating ? { mutating: true } : {}) });
    if (!ok) {
      throw new HostCommandError(this.target.name, shown, { code: result.code, stdout: redactAll(result.stdout, opts.secrets), stderr: redactAll(result.stderr, opts.secrets) });
    }
    return result;
  }

  close(): void {
    this.client.end();
    this.jump?.end();
  }

  private exec(command: string, opts: RunOptions, shown: string): Promise<CommandResult> {
    const asRoot = this.target.user === 'root' ? `sh -c ${shq(command)}` : `sudo -n sh -c ${shq(command)}`;
    const timeoutMs = opts.timeoutMs ?? this.o.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    return new Promise<CommandResult>((resolve, reject) => {
      this.client.exec(asRoot, (err, stream: ClientChannel) => {
        if (err) return reject(unreachable(this.target, err));
        const out = { stdout: '', stderr: '' };
        const lines = { stdout: '', stderr: '' };
        let settled = false;
        const finish = (fn: () => void): void => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          this.o.signal?.removeEventListener('abort', onAbort);
          this.client.removeListener('close', onDrop);
          fn();
        };
        const timer = setTimeout(() => {
          stream.close();
          finish(() => reject(new TransientError('HOST_COMMAND_TIMEOUT', `host ${this.target.name}: \`${shown}\` did not finish within ${Math.round(timeoutMs / 1000)}s`, { hint: 'the command may still run on the host; a rerun waits for it (kubeadm runs under a lock) or raise command-timeout' })));
        }, timeoutMs);
        const onAbort = (): void => {
          stream.close();
          finish(() => reject(new TransientError('HOST_COMMAND_ABORTED', `host ${this.target.name}: \`${shown}\` stopped: the step is stopping`)));
        };
        const onDrop = (): void => finish(() => reject(new TransientError('HOST_CONNECTION_LOST', `host ${this.target.name} (${this.target.address}:${this.target.port}): the connection dropped while \`${shown}\` ran`, { hint: 'check the host is up and reachable; a rerun resumes where this one stopped' })));
        this.o.signal?.addEventListener('abort', onAbort, { once: true });
        this.client.once('close', onDrop);
        const take = (which: 'stdout' | 'stderr') => (chunk: Buffer): void => {
          const text = chunk.toString('utf8');
          if (out[which].length < OUTPUT_LIMIT) out[which] += text;
          // Whole lines into the step's log as they come: long commands (kubeadm, package installs) show progress.
          const parts = (lines[which] + text).split('\n');
          lines[which] = parts.pop()!;
          // A change's output (kubeadm's phases, a package install) is the step's progress: info; a query's is debug.
          for (const line of parts) if (line.trim()) this.o.log[opts.mutating ? 'info' : 'debug'](`${this.target.name}| ${redactAll(line, opts.secrets)}`, { host: this.target.name, stream: which });
        };
        stream.on('data', take('stdout'));
        stream.stderr.on('data', take('stderr'));
        stream.on('close', (code: number | null, signal?: string) => {
          finish(() => resolve({ code: code ?? (signal ? 128 : 255), ...out }));
        });
        if (opts.stdin !== undefined) stream.end(opts.stdin);
        else stream.end();
      });
    });
  }
}

function redactAll(text: string, secrets: readonly string[] | undefined): string {
  let out = redactString(text);
  for (const s of secrets ?? []) if (s) out = out.split(s).join('[REDACTED]');
  return out;
}

/** Connect and authenticate, the host key checked first. */
function open(target: SshTarget, o: SshOptions, sock: ConnectConfig['sock']): Promise<{ client: Client; keySeen?: KeySeen }> {
  const pin = target.hostKey ? parseHostKeyPin(target.hostKey) : undefined;
  if (!pin && !target.trustOnFirstUse) {
    throw new InputError('HOST_KEY_MISSING', `host ${target.name}: no pinned host key${target.where ? ` at ${target.where}` : ''}`, { hint: `add hostKey (\`ssh-keyscan -t ed25519 ${target.address}\`), or set trustOnFirstUse: true` });
  }
  return new Promise((resolve, reject) => {
    const client = new Client();
    let seen: Buffer | undefined;
    let refused = false;
    let settled = false;
    const fail = (err: Error): void => {
      client.end();
      if (!settled) reject(err);
      settled = true;
    };
    client.once('ready', () => {
      settled = true;
      const keySeen = !pin && seen ? { host: target.name, ...(target.where ? { where: target.where } : {}), keyLine: keyLineOf(seen), fingerprint: fingerprintOf(seen) } : undefined;
      resolve({ client, ...(keySeen ? { keySeen } : {}) });
    });
    // Errors after the handshake (a dropped host) end the connection: its 'close' fails the running command.
    client.on('error', (err: Error & { level?: string }) => {
      if (settled) return;
      if (refused && seen) {
        return fail(new ConflictError('HOST_KEY_MISMATCH', `host ${target.name} (${target.address}:${target.port}) showed the key ${fingerprintOf(seen)} (${keyTypeOf(seen)}), not the one pinned${target.where ? ` at ${target.where}` : ''} (${pin?.kind === 'key' ? fingerprintOf(pin.blob) : `SHA256:${pin?.sha256}`}); nothing was sent to it`, {
          hint: 'if the host was reinstalled, pin its new key in Git (`ssh-keyscan -t ed25519 <address>`, checked out of band); otherwise someone may be in the middle',
        }));
      }
      if (err.level === 'client-authentication') {
        return fail(new InputError('HOST_AUTH_FAILED', `host ${target.name}: ${target.user}@${target.address}:${target.port} refused capflow's SSH key`, { hint: "add the public half of the inventory's sshKeySecretRef key to the user's ~/.ssh/authorized_keys" }));
      }
      fail(unreachable(target, err));
    });
    client.connect({
      host: target.address,
      port: target.port,
      username: target.user,
      privateKey: o.privateKey,
      ...(sock ? { sock } : {}),
      readyTimeout: o.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      keepaliveInterval: KEEPALIVE_MS,
      keepaliveCountMax: KEEPALIVE_MAX,
      // Ask for the pinned key's type, so a host with several keys shows the one we know.
      ...(pin?.kind === 'key' ? { algorithms: { serverHostKey: hostKeyAlgorithms(pin.type) as never } } : {}),
      hostVerifier: (key: Buffer) => {
        seen = key;
        refused = pin ? !pinMatches(pin, key) : false;
        return !refused;
      },
    });
  });
}

/** The host key algorithms that show a key of this type (an RSA key is signed three ways). */
function hostKeyAlgorithms(type: string): string[] {
  return type === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [type];
}

/** A TCP channel through the jump host to the target. */
function forward(jump: Client, via: SshTarget, target: SshTarget): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    jump.forwardOut('127.0.0.1', 0, target.address, target.port, (err, channel) => {
      if (err) reject(new TransientError('HOST_UNREACHABLE', `host ${target.name}: the jump host ${via.name} cannot reach ${target.address}:${target.port}: ${err.message}`));
      else resolve(channel);
    });
  });
}

function unreachable(target: SshTarget, err: Error): Error {
  if (isCapflowError(err)) return err;
  return new TransientError('HOST_UNREACHABLE', `host ${target.name} (${target.user}@${target.address}:${target.port}): ${err.message}`, { hint: 'check the address, that sshd runs and that the network lets capflow in; a rerun tries again' });
}
