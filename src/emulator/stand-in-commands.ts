/**
 * Stand-ins for the commands a machine's boot runs that would change the host (kernel sysctls and
 * modules, swap, services, hostname, clock, packages, file systems, power) or need a real container
 * runtime. The machine's PATH puts binDir first, so bootstrap scripts find these instead: each
 * records its call as one JSON line in the record file and succeeds. `systemctl is-active` and
 * `is-enabled` answer `active`/`enabled` for the image's units (kubelet, containerd) and
 * `inactive`/`disabled` (exit 3/1) for any other; crictl, ctr and the rest print nothing.
 * `systemctl stop kubelet` stops the machine's kubelet stand-in (and with it its pods, as kubeadm
 * reset's container removal would) and holds it down until `systemctl start|restart kubelet`
 * (the machine agent reads the request; see KUBELET_SERVICE in machine-config.ts).
 *
 * The kernel's and swap's stand-ins keep a little state of their own, per machine (a JSON-lines file
 * of changes next to the record file, in the machine's own /var), so that host preparation can check,
 * change, and see its change on a rerun, while the host's kernel stays untouched:
 *   - `modprobe <m>` (`-a` several, `-r` removes) marks m loaded (dashes read as underscores, any name
 *     loads); `lsmod` prints lsmod's header and lines (`name size used-by`) for the modules loaded so,
 *     newest first, with size 0, then /proc/modules' own (none when the kernel has no such file);
 *   - `sysctl -w k=v` (or `sysctl k=v`), `sysctl -p [file...]` (default /etc/sysctl.conf) and
 *     `sysctl --system` (/etc/sysctl.d/*.conf in name order, then /etc/sysctl.conf) record values and
 *     print `k = v` as sysctl does (not with -q); any key is accepted. `sysctl [-n|-N] k` prints the
 *     recorded value, else the real /proc/sys/k (dots read as slashes), else says
 *     `sysctl: cannot stat /proc/sys/...: No such file or directory` and exits 255 (-e: silent, 0);
 *   - `swapoff -a` (or a device) records swap off and `swapon -a` (or a device) on again; `swapon`,
 *     `swapon --show[=columns]` (`--noheadings`, `--bytes`) print /proc/swaps' areas that are not off
 *     in swapon's table, and nothing at all when none is (as swapon does); `swapon -s` prints
 *     /proc/swaps' own lines.
 *
 * Each script execs Node on one small recorder instead of building the JSON in sh: escaping any
 * argv (quotes, backslashes, newlines, control characters) into JSON with POSIX sh tools alone is
 * easy to get subtly wrong, and JSON.stringify is not. Node is on every machine (it runs the agent).
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { InternalError } from '../core/errors.js';
import { KUBELET_SERVICE } from './machine-config.js';

export const STAND_IN_COMMANDS = [
  'systemctl', 'crictl', 'ctr', 'apt-get', 'apt', 'yum', 'dnf', 'modprobe', 'lsmod', 'sysctl', 'swapoff',
  'swapon', 'hostnamectl', 'reboot', 'shutdown', 'mkfs', 'timedatectl', 'chronyc',
] as const;

export interface StandInCall {
  command: string;
  args: string[];
  /** ISO 8601, when the stand-in ran. */
  time: string;
}

export interface StandInOptions {
  /** The stand-ins' state (modules, sysctls, swap): default `stand-in-state.jsonl` next to the record file. */
  stateFile?: string;
  /** Where `sysctl -p` and `--system` read sysctl.conf and sysctl.d: default /etc (tests give a temp dir). */
  etcDir?: string;
  /** Where modules, swaps and sys are read: default /proc (tests give a temp dir). */
  procDir?: string;
  /** The kubelet service's pid and request files (default KUBELET_SERVICE; tests give a temp dir). */
  kubeletService?: { pidFile: string; requestFile: string };
}

/** Hidden, so that it is no command of its own on the PATH. */
const RECORDER = '.capflow-stand-in-recorder.cjs';

/** The state file of a record file when none is given: next to it. */
export function standInStateFile(recordFile: string): string {
  return join(dirname(recordFile), 'stand-in-state.jsonl');
}

// argv: [node, recorder, recordFile, command, ...args]; SETTINGS is replaced by the options as JSON.
// One appendFileSync is one write(2) with O_APPEND, so concurrent calls never interleave within a
// line, in the record file as in the state file (changes are appended and replayed, never rewritten).
const RECORDER_SOURCE = String.raw`'use strict';
const { appendFileSync, readFileSync, readdirSync } = require('node:fs');
const { join } = require('node:path');
const SETTINGS = /*SETTINGS*/;
// the units the machine image has; others (firewalld, say) are not installed, as systemctl would say
const IMAGE_UNITS = new Set(['kubelet', 'containerd']);
const [recordFile, command, ...args] = process.argv.slice(2);
appendFileSync(recordFile, JSON.stringify({ command, args, time: new Date().toISOString() }) + '\n');
const out = (text) => process.stdout.write(text);
const fail = (text, code) => {
  process.stderr.write(text + '\n');
  process.exitCode = code;
};
const readText = (file) => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
};

// ---- the state: one JSON line per change, replayed in order
function readState() {
  const state = { modules: new Map(), sysctl: new Map(), swapAllOff: false, swapOff: new Set(), swapOn: new Set() };
  for (const line of (readText(SETTINGS.stateFile) || '').split('\n')) {
    let e;
    try {
      e = JSON.parse(line);
    } catch {
      continue;
    }
    if (typeof e.module === 'string') {
      state.modules.delete(e.module); // a Map keeps insertion order: the latest change is last
      state.modules.set(e.module, e.loaded === true);
    } else if (typeof e.sysctl === 'string') state.sysctl.set(e.sysctl, String(e.value));
    else if (e.swap === 'off' || e.swap === 'on') {
      const [now, other] = e.swap === 'off' ? [state.swapOff, state.swapOn] : [state.swapOn, state.swapOff];
      if (e.device) {
        other.delete(e.device);
        now.add(e.device);
      } else {
        state.swapAllOff = e.swap === 'off';
        state.swapOff.clear();
        state.swapOn.clear();
      }
    }
  }
  return state;
}
const change = (entry) => appendFileSync(SETTINGS.stateFile, JSON.stringify(entry) + '\n');

// ---- short options may come clustered (-nq); withValue ones take a value (-C file, -Cfile, --config
// file, --config=file), optional ones only an attached one (-pfile, --load=file)
function parseArgs(argv, withValue, optional = []) {
  const flags = new Map();
  const words = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      words.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      flags.set(name, eq < 0 ? (withValue.includes(name) ? argv[++i] ?? '' : true) : a.slice(eq + 1));
    } else if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const c = a[j];
        if (withValue.includes(c) || (optional.includes(c) && j + 1 < a.length)) {
          flags.set(c, j + 1 < a.length ? a.slice(j + 1) : argv[++i] ?? '');
          break;
        }
        flags.set(c, true);
      }
    } else words.push(a);
  }
  return { flags, words };
}
const has = (flags, ...names) => names.some((n) => flags.has(n));

// ---- modprobe and lsmod
const moduleName = (name) => name.replace(/-/g, '_');
function modprobe() {
  const { flags, words } = parseArgs(args, ['C', 'config', 'd', 'dirname', 'S', 'set-version', 'o']);
  if (has(flags, 'n', 'dry-run', 'show-depends', 'c', 'showconfig', 'V', 'version')) return;
  const remove = has(flags, 'r', 'remove');
  // without -a or -r, the words after the module are its parameters (name=value)
  const modules = remove || has(flags, 'a', 'all') ? words : words.slice(0, 1);
  for (const m of modules) change({ module: moduleName(m), loaded: !remove });
}
function lsmod() {
  const state = readState();
  const kernel = (readText(join(SETTINGS.procDir, 'modules')) || '')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const [name, size, refcount, users] = line.split(/\s+/);
      return { name, size, refcount, users: users && users !== '-' ? users.split(',').filter(Boolean) : [] };
    });
  const known = new Set(kernel.map((m) => m.name));
  const loaded = [...state.modules].filter(([name, yes]) => yes && !known.has(name)).map(([name]) => name).reverse();
  const rows = [...loaded.map((name) => ({ name, size: '0', refcount: '0', users: [] })), ...kernel.filter((m) => state.modules.get(m.name) !== false)];
  // kmod's lsmod: printf("%-19s %8lu  %d", ...), then " " and the users joined by ","
  out('Module                  Size  Used by\n');
  for (const m of rows) out(m.name.padEnd(19) + ' ' + m.size.padStart(8) + '  ' + m.refcount + (m.users.length ? ' ' + m.users.join(',') : '') + '\n');
}

// ---- sysctl
const sysctlKey = (key) => key.trim().replace(/\//g, '.');
const procSysPath = (key) => 'sys/' + key.replace(/\./g, '/');
function sysctl() {
  const { flags, words } = parseArgs(args, ['r', 'pattern'], ['p', 'load']);
  const quiet = has(flags, 'q', 'quiet');
  const ignore = has(flags, 'e', 'ignore');
  const valuesOnly = has(flags, 'n', 'values');
  const namesOnly = has(flags, 'N', 'names');
  const show = (key, value) => {
    if (!quiet) out((valuesOnly ? value : namesOnly ? key : key + ' = ' + value) + '\n');
  };
  const write = (key, value) => {
    change({ sysctl: key, value });
    show(key, value);
  };
  const load = (file, label) => {
    const text = readText(file);
    if (text === undefined) return fail('sysctl: cannot open "' + label + '": No such file or directory', 1);
    for (const raw of text.split('\n')) {
      let line = raw.trim();
      if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
      if (line.startsWith('-')) line = line.slice(1); // "-key = value": errors ignored
      const eq = line.indexOf('=');
      if (eq < 0) continue;
      write(sysctlKey(line.slice(0, eq)), line.slice(eq + 1).trim());
    }
  };
  if (has(flags, 'system')) {
    const dir = join(SETTINGS.etcDir, 'sysctl.d');
    let names = [];
    try {
      names = readdirSync(dir).filter((n) => n.endsWith('.conf')).sort();
    } catch {
      /* no directory */
    }
    for (const name of [...names.map((n) => ['sysctl.d/' + n, join(dir, n)]), ['sysctl.conf', join(SETTINGS.etcDir, 'sysctl.conf')]]) {
      if (readText(name[1]) === undefined) continue;
      if (!quiet) out('* Applying /etc/' + name[0] + ' ...\n');
      load(name[1], '/etc/' + name[0]);
    }
    return;
  }
  if (has(flags, 'p', 'load')) {
    const given = [flags.get('p'), flags.get('load')].filter((f) => typeof f === 'string' && f !== '');
    const files = [...given, ...words];
    if (files.length === 0) load(join(SETTINGS.etcDir, 'sysctl.conf'), '/etc/sysctl.conf');
    for (const f of files) load(f, f);
    return;
  }
  if (has(flags, 'a', 'A', 'X', 'all')) return;
  const state = readState();
  for (const word of words) {
    const eq = word.indexOf('=');
    if (eq >= 0) {
      write(sysctlKey(word.slice(0, eq)), word.slice(eq + 1).trim());
      continue;
    }
    const key = sysctlKey(word);
    let value = state.sysctl.get(key);
    if (value === undefined) {
      const text = readText(join(SETTINGS.procDir, procSysPath(key)));
      if (text !== undefined) value = text.replace(/\n$/, '');
    }
    if (value === undefined) {
      if (!ignore) fail('sysctl: cannot stat /proc/' + procSysPath(key) + ': No such file or directory', 255);
      continue;
    }
    show(key, value);
  }
}

// ---- swapoff and swapon
function swapoffOrOn(to) {
  const { flags, words } = parseArgs(args, ['p', 'priority', 'o', 'options']);
  if (has(flags, 'a', 'all')) change({ swap: to });
  for (const device of words) change({ swap: to, device });
}
function swapAreas() {
  const state = readState();
  const lines = (readText(join(SETTINGS.procDir, 'swaps')) || '').split('\n');
  const areas = lines
    .slice(1)
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const [name, type, size, used, prio] = line.trim().split(/\s+/);
      return { line, name: name.replace(/\\040/g, ' '), type, size: Number(size) * 1024, used: Number(used) * 1024, prio };
    })
    .filter((a) => !state.swapOff.has(a.name) && (!state.swapAllOff || state.swapOn.has(a.name)));
  return { header: lines[0] || '', areas };
}
// util-linux's size_to_human_string with one-letter suffixes: 2G, 1.5G, 0B
function humanSize(bytes) {
  let exp = 0;
  while (exp < 60 && bytes >= 2 ** (exp + 10)) exp += 10;
  const unit = 2 ** exp;
  let dec = Math.floor(bytes / unit);
  let frac = exp ? bytes - dec * unit : 0;
  if (frac) {
    frac = Math.floor((Math.floor(frac / 2 ** (exp - 10)) + 50) / 100);
    if (frac === 10) {
      dec += 1;
      frac = 0;
    }
  }
  return String(dec) + (frac ? '.' + frac : '') + 'BKMGTPE'[exp / 10];
}
function swapon() {
  const { flags, words } = parseArgs(args, ['p', 'priority', 'o', 'options', 'L', 'U'], ['show']);
  if (has(flags, 'a', 'all') || words.length > 0) return swapoffOrOn('on');
  const { header, areas } = swapAreas();
  if (has(flags, 's', 'summary')) {
    if (areas.length > 0) out([header, ...areas.map((a) => a.line)].join('\n') + '\n');
    return;
  }
  if (areas.length === 0) return; // swapon prints no table, not even its header, without areas
  const columns = typeof flags.get('show') === 'string' && flags.get('show') ? flags.get('show').split(',').map((c) => c.trim().toUpperCase()) : ['NAME', 'TYPE', 'SIZE', 'USED', 'PRIO'];
  const bytes = has(flags, 'bytes');
  const cell = (a, c) => ({ NAME: a.name, TYPE: a.type, SIZE: bytes ? String(a.size) : humanSize(a.size), USED: bytes ? String(a.used) : humanSize(a.used), PRIO: a.prio })[c] ?? '';
  const right = new Set(['SIZE', 'USED', 'PRIO']);
  const rows = [...(has(flags, 'noheadings') ? [] : [columns]), ...areas.map((a) => columns.map((c) => cell(a, c)))];
  const widths = columns.map((c, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) {
    out(r.map((text, i) => (right.has(columns[i]) ? text.padStart(widths[i]) : i === r.length - 1 ? text : text.padEnd(widths[i]))).join(' ') + '\n');
  }
}

// systemctl stop kubelet acts on the agent's kubelet service: held down until a start or restart,
// the running kubelet gets SIGTERM and is waited for, as systemctl stop waits. The stand-in's pods
// are its own processes and stop with it: what kubeadm reset's removal of the containers does after
// its stop. start and restart only lift a stop: a real restart leaves the containers running, so
// the stand-in (which reads its files afresh as they change) is not restarted.
function kubeletService(verb) {
  const { mkdirSync, writeFileSync } = require('node:fs');
  const { dirname } = require('node:path');
  mkdirSync(dirname(SETTINGS.kubelet.requestFile), { recursive: true });
  writeFileSync(SETTINGS.kubelet.requestFile, verb === 'stop' ? 'stop' : 'start');
  if (verb !== 'stop') return;
  const pid = Number(readText(SETTINGS.kubelet.pidFile));
  if (!(pid > 1)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const nap = new Int32Array(new SharedArrayBuffer(4));
  for (const deadline = Date.now() + 60000; Date.now() < deadline; ) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    Atomics.wait(nap, 0, 0, 100);
  }
}

if (command === 'systemctl') {
  const [verb, ...units] = args.filter((a) => !a.startsWith('-'));
  const answers = { 'is-active': ['active', 'inactive', 3], 'is-enabled': ['enabled', 'disabled', 1] }[verb];
  if (answers) {
    const quiet = args.includes('-q') || args.includes('--quiet');
    const installed = units.map((u) => IMAGE_UNITS.has(u.replace(/\.service$/, '')));
    if (!quiet) out(installed.map((yes) => (yes ? answers[0] : answers[1]) + '\n').join(''));
    if (installed.some((yes) => !yes)) process.exitCode = answers[2];
  } else if (['start', 'stop', 'restart', 'try-restart', 'reload-or-restart'].includes(verb) && units.some((u) => u.replace(/\.service$/, '') === 'kubelet')) {
    kubeletService(verb);
  }
} else if (command === 'modprobe') modprobe();
else if (command === 'lsmod') lsmod();
else if (command === 'sysctl') sysctl();
else if (command === 'swapoff') swapoffOrOn('off');
else if (command === 'swapon') swapon();
`;

export function writeStandInCommands(binDir: string, recordFile: string, opts: StandInOptions = {}): void {
  mkdirSync(binDir, { recursive: true });
  mkdirSync(dirname(recordFile), { recursive: true });
  const stateFile = opts.stateFile ?? standInStateFile(recordFile);
  mkdirSync(dirname(stateFile), { recursive: true });
  const settings = { stateFile, etcDir: opts.etcDir ?? '/etc', procDir: opts.procDir ?? '/proc', kubelet: opts.kubeletService ?? KUBELET_SERVICE };
  const recorder = join(binDir, RECORDER);
  writeFileSync(recorder, RECORDER_SOURCE.replace('/*SETTINGS*/', JSON.stringify(settings)));
  for (const command of STAND_IN_COMMANDS) {
    const script = join(binDir, command);
    writeFileSync(
      script,
      [
        '#!/bin/sh',
        `# capflow stand-in for ${command}: records the call and changes nothing on the host (src/emulator/stand-in-commands.ts)`,
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
