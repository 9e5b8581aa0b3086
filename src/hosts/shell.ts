/**
 * What every host-side module (preparation, kubeadm, reset) needs of a host: a shell to run one
 * command in. The SSH transport (ssh.ts) gives one per host; tests may give a local one. Commands
 * are POSIX sh; the transport runs them as root (through `sudo -n` when the login user is not root),
 * logs each with its exit code (secrets redacted) and streams its output into the step's log.
 */

import { TransientError } from '../core/errors.js';

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Bytes fed to the command's stdin (a file's content, say): never logged. */
  stdin?: string | Buffer;
  /** The command changes the host. Logged as such and counted: a no-op rerun runs none. */
  mutating?: boolean;
  /** Exit codes that are answers, not failures (default [0]); any other throws HostCommandError. */
  okCodes?: number[];
  /** Per-command deadline (default: the transport's command timeout). */
  timeoutMs?: number;
  /** Values to redact from the logged command and output, beyond the usual secret patterns. */
  secrets?: string[];
}

export interface HostShell {
  /** The inventory's host name, for messages. */
  readonly host: string;
  run(command: string, opts?: RunOptions): Promise<CommandResult>;
}

/** Shell-quote one word for POSIX sh. */
export function shq(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * A command that exited with a code its caller did not expect. Transient (exit 75): a rerun after
 * the host is fixed, or after a dropped connection, picks up where this one stopped.
 */
export class HostCommandError extends TransientError {
  constructor(
    readonly host: string,
    readonly command: string,
    readonly result: CommandResult,
  ) {
    const tail = (result.stderr.trim() || result.stdout.trim()).split('\n').slice(-5).join('\n');
    super('HOST_COMMAND_FAILED', `host ${host}: \`${command.split('\n')[0]}\` exited ${result.code}${tail ? `: ${tail}` : ''}`, {
      hint: `see the command's output above; run it on ${host} by hand to look closer, then rerun the step`,
    });
  }
}
