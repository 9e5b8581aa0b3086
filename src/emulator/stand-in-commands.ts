/**
 * Stand-ins for the commands a machine's boot runs that would change the host (kernel sysctls and
 * modules, swap, services, hostname, clock, packages, file systems, power) or need a real container
 * runtime. The machine's PATH puts binDir first, so bootstrap scripts find these instead: each
 * records its call as one JSON line in the record file and succeeds. `systemctl is-active` and
 * `is-enabled` answer `active`/`enabled` for the image's units (kubelet, containerd) and
 * `inactive`/`disabled` (exit 3/1) for any other; the others print nothing.
 *
 * Each script execs Node on one small recorder instead of building the JSON in sh: escaping any
 * argv (quotes, backslashes, newlines, control characters) into JSON with POSIX sh tools alone is
 * easy to get subtly wrong, and JSON.stringify is not. Node is on every machine (it runs the agent).
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { InternalError } from '../core/errors.js';

export const STAND_IN_COMMANDS = [
  'systemctl', 'crictl', 'ctr', 'apt-get', 'apt', 'yum', 'dnf', 'modprobe', 'sysctl', 'swapoff',
  'hostnamectl', 'reboot', 'shutdown', 'mkfs', 'timedatectl', 'chronyc',
] as const;

export interface StandInCall {
  command: string;
  args: string[];
  /** ISO 8601, when the stand-in ran. */
  time: string;
}

/** Hidden, so that it is no command of its own on the PATH. */
const RECORDER = '.capflow-stand-in-recorder.cjs';

// argv: [node, recorder, recordFile, command, ...args]. One appendFileSync is one write(2) with
// O_APPEND, so concurrent calls never interleave within a line.
const RECORDER_SOURCE = `'use strict';
const { appendFileSync } = require('node:fs');
// the units the machine image has; others (firewalld, say) are not installed, as systemctl would say
const IMAGE_UNITS = new Set(['kubelet', 'containerd']);
const [recordFile, command, ...args] = process.argv.slice(2);
appendFileSync(recordFile, JSON.stringify({ command, args, time: new Date().toISOString() }) + '\\n');
if (command === 'systemctl') {
  const [verb, ...units] = args.filter((a) => !a.startsWith('-'));
  const answers = { 'is-active': ['active', 'inactive', 3], 'is-enabled': ['enabled', 'disabled', 1] }[verb];
  if (answers) {
    const quiet = args.includes('-q') || args.includes('--quiet');
    const installed = units.map((u) => IMAGE_UNITS.has(u.replace(/\\.service$/, '')));
    if (!quiet) process.stdout.write(installed.map((yes) => (yes ? answers[0] : answers[1]) + '\\n').join(''));
    if (installed.some((yes) => !yes)) process.exitCode = answers[2];
  }
}
`;

export function writeStandInCommands(binDir: string, recordFile: string): void {
  mkdirSync(binDir, { recursive: true });
  mkdirSync(dirname(recordFile), { recursive: true });
  const recorder = join(binDir, RECORDER);
  writeFileSync(recorder, RECORDER_SOURCE);
  for (const command of STAND_IN_COMMANDS) {
    const script = join(binDir, command);
    writeFileSync(
      script,
      [
        '#!/bin/sh',
        `# capflow stand-in for ${command}: records the call and changes nothing (src/emulator/stand-in-commands.ts)`,
        // the agent's NODE_OPTIONS (a loader, a debugger) are not the recorder's
        'unset NODE_OPTIONS',
        `exec ${[process.execPath, recorder, recordFile, command].map(shQuote).join(' ')} "$@"`,
        '',
      ].join('\n'),
    );
    chmodSync(script, 0o755);
  }
}

/** The calls recorded so far, oldest first; none when nothing has run yet. */
export function readStandInCalls(recordFile: string): StandInCall[] {
  if (!existsSync(recordFile)) return [];
  return readFileSync(recordFile, 'utf8')
    .split('\n')
    .flatMap((line, i) => {
      if (line.trim() === '') return [];
      try {
        return [JSON.parse(line) as StandInCall];
      } catch (err) {
        throw new InternalError('STAND_IN_RECORD_UNREADABLE', `${recordFile}:${i + 1} is not a JSON line`, { cause: err });
      }
    });
}

function shQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
