/**
 * The cloud-init stand-in of an emulated EC2 machine. User data is decoded as cloud-init decodes it
 * (gzip, MIME multipart, `## template: jinja`, `#cloud-config`, `#!` scripts); then the modules
 * capflow's bootstrap data uses run in the stage order of cloud-init's stock cloud.cfg (checked
 * against cloud-init 22.4's /etc/cloud/cloud.cfg and its config/cc_*.py sources):
 *   init:   bootcmd, write_files, users_groups
 *   config: apt_configure, yum_add_repo, ntp, runcmd
 *   final:  package_update_upgrade_install, write_files_deferred, scripts_user, final_message
 * As in cloud-init, runcmd only writes one /bin/sh script (no `set -e`); scripts_user runs it with the
 * user data's own scripts in name order (part-001, ..., runcmd), so it runs after packages and
 * deferred files. A failed module is reported and the later ones still run. Packages, repositories
 * and NTP are recorded, not applied: the machine shares the host's kernel and package manager.
 */
import { spawn } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir, uptime } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { NotFoundError } from '../core/errors.js';
import { isRecord, messageOf, type InstanceMetadata, type UserDataPart } from './user-data.js';

export type { InstanceMetadata, UserDataPart } from './user-data.js';

export interface BootContext {
  /** '/' in a machine; a temp dir in unit tests: every file path is joined under it. */
  root: string;
  meta: InstanceMetadata;
  log(line: string): void;
  /** Exit code; a string runs with sh -c. The implementation sends the output to the boot log. */
  run(argv: string[] | string, opts?: { env?: Record<string, string> }): Promise<number>;
  /** When set, cloud-config parts are schema-checked first; a failure fails the boot before any module runs. */
  cloudInitBinary?: string;
}

export interface BootReport {
  ok: boolean;
  errors: string[];
  modules: { name: string; ok: boolean; detail?: string }[];
  recorded: { module: string; config: unknown }[];
}

const VERSION = 'capflow-emulator';
const DATASOURCE = 'DataSourceEc2Local';

// ---- The schema check -------------------------------------------------------------------------

/** `cloud-init schema --config-file` on one cloud-config; its exit code decides. */
export async function checkCloudConfig(text: string, cloudInitBinary: string): Promise<{ ok: boolean; output: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'capflow-cloud-config-'));
  try {
    const file = join(dir, 'user-data');
    // A MIME text/cloud-config part may lack the header the schema command insists on.
    writeFileSync(file, /^#cloud-config/i.test(text) ? text : `#cloud-config\n${text}`);
    const { code, output } = await capture(cloudInitBinary, ['schema', '--config-file', file]);
    return { ok: code === 0, output };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function capture(command: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.on('error', (err) =>
      reject(new NotFoundError('CLOUD_INIT_UNAVAILABLE', `cannot run ${command}: ${err.message}`, { cause: err })),
    );
    child.on('close', (code) => resolve({ code, output: output.trim() }));
  });
}

// ---- The boot ---------------------------------------------------------------------------------

/** cloud-init's status.json keys: the init stage runs cloud_init_modules; modules-init is unused at boot. */
type Stage = 'init-local' | 'init' | 'modules-init' | 'modules-config' | 'modules-final';
interface StageStatus {
  errors: string[];
  start: number | null;
  finished: number | null;
}
const notRun = (): StageStatus => ({ errors: [], start: null, finished: null });

interface Boot {
  ctx: BootContext;
  report: BootReport;
  stage: Stage;
  stages: Record<Stage, StageStatus>;
  /** Where cloud-init keeps this instance's scripts: per instance, so machines sharing /var/lib never meet. */
  scriptsDir: string;
}

/** The keys the modules below read; any other top-level key is logged as ignored. */
const HANDLED_KEYS = new Set([
  'bootcmd', 'write_files', 'users', 'groups', 'apt', 'yum_repos', 'yum_repo_dir', 'ntp', 'runcmd',
  'packages', 'package_update', 'package_upgrade', 'package_reboot_if_required', 'final_message', 'merge_how', 'merge_type',
]);

export async function boot(parts: UserDataPart[], ctx: BootContext): Promise<BootReport> {
  const b: Boot = {
    ctx,
    report: { ok: false, errors: [], modules: [], recorded: [] },
    stage: 'init',
    stages: { 'init-local': notRun(), init: notRun(), 'modules-init': notRun(), 'modules-config': notRun(), 'modules-final': notRun() },
    scriptsDir: under(ctx.root, `/var/lib/cloud/instances/${ctx.meta.instanceId}/scripts`),
  };
  enterStage(b, 'init');
  log(b, `Cloud-init stand-in ${VERSION} booting instance ${ctx.meta.instanceId}`);
  for (const part of parts) if (part.kind === 'error') fail(b, `user_data: [${part.code}] ${part.message}`);
  const configs = parts.flatMap((p) => (p.kind === 'cloud-config' ? [p] : []));
  if (ctx.cloudInitBinary && !(await schemaPasses(b, configs, ctx.cloudInitBinary))) {
    log(b, 'Skipping every module: the cloud-config does not pass cloud-init schema');
    return finish(b);
  }
  const cfg = configs.reduce<Record<string, unknown>>((merged, p) => mergeConfig(merged, p.config), {});
  const ignored = Object.keys(cfg).filter((k) => !HANDLED_KEYS.has(k));
  if (ignored.length > 0) log(b, `Ignoring ${ignored.join(', ')}: the emulator does not implement them`);
  writeUserScripts(b, parts);

  if (cfg.bootcmd !== undefined) await runModule(b, 'bootcmd', () => bootcmd(b, cfg.bootcmd));
  const files = asArray(cfg.write_files);
  const now = files.filter((f) => !cfgBool(asRecord(f).defer, false));
  if (now.length > 0 || (cfg.write_files != null && !Array.isArray(cfg.write_files))) {
    await runModule(b, 'write_files', () => writeFiles(b, now, cfg.write_files));
  }
  if (cfg.users !== undefined || cfg.groups !== undefined) await runModule(b, 'users_groups', () => usersAndGroups(b, cfg));

  enterStage(b, 'modules-config');
  record(b, 'apt_configure', pick(cfg, ['apt']));
  record(b, 'yum_add_repo', pick(cfg, ['yum_repos', 'yum_repo_dir']));
  record(b, 'ntp', pick(cfg, ['ntp']));
  if (cfg.runcmd !== undefined) await runModule(b, 'runcmd', () => writeRuncmd(b, cfg.runcmd));

  enterStage(b, 'modules-final');
  record(b, 'package_update_upgrade_install', pick(cfg, ['packages', 'package_update', 'package_upgrade', 'package_reboot_if_required']));
  const deferred = files.filter((f) => cfgBool(asRecord(f).defer, false));
  if (deferred.length > 0) await runModule(b, 'write_files_deferred', () => writeFiles(b, deferred, cfg.write_files));
  if (existsSync(b.scriptsDir) && readdirSync(b.scriptsDir).length > 0) await runModule(b, 'scripts_user', () => scriptsUser(b));
  await runModule(b, 'final_message', async () => finalMessage(b, cfg.final_message));
  return finish(b);
}

async function schemaPasses(b: Boot, configs: { name: string; text: string }[], binary: string): Promise<boolean> {
  let passes = true;
  for (const part of configs) {
    log(b, `Checking ${part.name} with cloud-init schema`);
    try {
      const r = await checkCloudConfig(part.text, binary);
      if (!r.ok) fail(b, `schema: ${part.name}: ${r.output}`);
      passes &&= r.ok;
    } catch (err) {
      fail(b, `schema: ${part.name}: ${messageOf(err)}`);
      passes = false;
    }
  }
  return passes;
}

/** cloud-init's default merge of cloud-config parts: mappings merge, anything else is replaced. */
function mergeConfig(base: Record<string, unknown>, next: Record<string, unknown>): Record<string, unknown> {
  const out = { ...base };
  for (const [k, v] of Object.entries(next)) {
    const old = out[k];
    out[k] = isRecord(old) && isRecord(v) ? mergeConfig(old, v) : v;
  }
  return out;
}

async function runModule(b: Boot, name: string, fn: () => Promise<string | undefined>): Promise<void> {
  log(b, `Running module ${name}`);
  try {
    const detail = await fn();
    b.report.modules.push({ name, ok: true, ...(detail ? { detail } : {}) });
  } catch (err) {
    const detail = messageOf(err);
    b.report.modules.push({ name, ok: false, detail });
    fail(b, `${name}: ${detail}`);
  }
}

/** Modules whose config is recorded and not applied (the host's packages, repositories, clock). */
function record(b: Boot, module: string, config: Record<string, unknown>): void {
  if (Object.keys(config).length === 0) return;
  log(b, `Recording module ${module}: the emulator does not apply it`);
  b.report.recorded.push({ module, config });
  b.report.modules.push({ name: module, ok: true, detail: 'recorded, not applied' });
}

function enterStage(b: Boot, stage: Stage): void {
  closeStage(b);
  b.stage = stage;
  b.stages[stage].start = Date.now() / 1000;
}

function closeStage(b: Boot): void {
  if (b.stages[b.stage].start !== null) b.stages[b.stage].finished = Date.now() / 1000;
}

function fail(b: Boot, error: string): void {
  b.report.errors.push(error);
  b.stages[b.stage].errors.push(error);
  log(b, `Failed ${error}`);
}

function log(b: Boot, line: string): void {
  b.ctx.log(line);
  const file = under(b.ctx.root, '/var/log/cloud-init-output.log');
  mkdirSync(dirname(file), { recursive: true });
  appendFileSync(file, `${line}\n`);
}

/** status.json and result.json in /run/cloud-init, shaped as cloud-init's (v1: datasource, stages, errors). */
function finish(b: Boot): BootReport {
  closeStage(b);
  const dir = under(b.ctx.root, '/run/cloud-init');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'status.json'), `${JSON.stringify({ v1: { datasource: DATASOURCE, stage: null, ...b.stages } }, null, 1)}\n`);
  writeFileSync(join(dir, 'result.json'), `${JSON.stringify({ v1: { datasource: DATASOURCE, errors: b.report.errors } }, null, 1)}\n`);
  b.report.ok = b.report.errors.length === 0;
  log(b, b.report.ok ? 'Boot finished' : `Boot finished with ${b.report.errors.length} error(s)`);
  return b.report;
}

// ---- Modules ----------------------------------------------------------------------------------

/** One script run with /bin/sh, INSTANCE_ID in its environment. */
async function bootcmd(b: Boot, commands: unknown): Promise<string> {
  const script = shellify(commands, 'bootcmd');
  const dir = mkdtempSync(join(mkdirp(under(b.ctx.root, '/run/cloud-init/tmp')), 'bootcmd-'));
  try {
    const file = join(dir, 'bootcmd.sh');
    writeFileSync(file, script);
    const code = await b.ctx.run(['/bin/sh', file], { env: { INSTANCE_ID: b.ctx.meta.instanceId } });
    if (code !== 0) throw new Error(`the bootcmd script exited ${code}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return 'ran the script';
}

/** Written only; scripts_user runs it, as cloud-init does. */
async function writeRuncmd(b: Boot, commands: unknown): Promise<string> {
  writeFileSync(join(mkdirp(b.scriptsDir), 'runcmd'), shellify(commands, 'runcmd'), { mode: 0o700 });
  return 'script written for scripts_user';
}

/** Shell-script parts go where scripts_user finds them; the directory starts empty on every boot. */
function writeUserScripts(b: Boot, parts: UserDataPart[]): void {
  rmSync(b.scriptsDir, { recursive: true, force: true });
  for (const part of parts) {
    if (part.kind === 'shell-script') writeFileSync(join(mkdirp(b.scriptsDir), part.name), part.text, { mode: 0o700 });
  }
}

/** Every script in name order; a failing one does not stop the next, and the module fails at the end. */
async function scriptsUser(b: Boot): Promise<string> {
  const names = readdirSync(b.scriptsDir).sort();
  const failed: string[] = [];
  for (const name of names) {
    try {
      const code = await b.ctx.run([join(b.scriptsDir, name)]);
      if (code !== 0) failed.push(`${name} (exit ${code})`);
    } catch (err) {
      failed.push(`${name} (${messageOf(err)})`);
    }
  }
  if (failed.length > 0) throw new Error(`${failed.length} of ${names.length} scripts failed: ${failed.join(', ')}`);
  return `ran ${names.join(', ')}`;
}

/** A command list as one /bin/sh script: a string is a shell line, a list an argv, quoted word by word. */
function shellify(commands: unknown, key: string): string {
  if (!Array.isArray(commands)) throw new Error(`${key} must be a list, not ${typeName(commands)}`);
  const lines = ['#!/bin/sh'];
  for (const c of commands) {
    if (Array.isArray(c)) lines.push(c.map((word) => shQuote(pyStr(word))).join(' '));
    else if (typeof c === 'string') lines.push(c);
    else if (c !== null) throw new Error(`a ${key} item must be a string or a list, not ${typeName(c)}`);
  }
  return `${lines.join('\n')}\n`;
}

const ENCODINGS: Record<string, ('base64' | 'gzip')[]> = {
  '': [], text: [], 'text/plain': [],
  b64: ['base64'], base64: ['base64'],
  gz: ['gzip'], gzip: ['gzip'],
  'gz+b64': ['base64', 'gzip'], 'gz+base64': ['base64', 'gzip'], 'gzip+b64': ['base64', 'gzip'], 'gzip+base64': ['base64', 'gzip'],
};

/** Entries in order; the first that fails stops the module, as in cloud-init. */
async function writeFiles(b: Boot, entries: unknown[], all: unknown): Promise<string> {
  if (!Array.isArray(all)) throw new Error(`write_files must be a list, not ${typeName(all)}`);
  const written: string[] = [];
  for (const [i, entry] of entries.entries()) {
    const f = asRecord(entry);
    if (typeof f.path !== 'string' || f.path === '') {
      log(b, `Skipping write_files entry ${i + 1}: it has no path`);
      continue;
    }
    const target = under(b.ctx.root, f.path);
    const content = decodeContent(b, f.content, f.encoding);
    const mode = decodePermissions(b, f.permissions);
    mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
    if (cfgBool(f.append, false)) appendFileSync(target, content);
    else writeFileSync(target, content);
    chmodSync(target, mode);
    await chown(b, target, typeof f.owner === 'string' ? f.owner : 'root:root');
    log(b, `Wrote ${f.path} (${content.length} bytes, mode ${mode.toString(8).padStart(4, '0')})`);
    written.push(f.path);
  }
  return `wrote ${written.join(', ')}`;
}

function decodeContent(b: Boot, content: unknown, encoding: unknown): Buffer {
  let data = content instanceof Uint8Array ? Buffer.from(content) : Buffer.from(content == null ? '' : pyStr(content), 'utf8');
  const name = typeof encoding === 'string' ? encoding.trim().toLowerCase() : '';
  const steps = ENCODINGS[name];
  if (!steps) log(b, `Unknown write_files encoding ${JSON.stringify(encoding)}: writing the content as text`);
  for (const step of steps ?? []) data = step === 'base64' ? Buffer.from(data.toString('latin1'), 'base64') : gunzipSync(data);
  return data;
}

function decodePermissions(b: Boot, permissions: unknown): number {
  if (permissions === undefined || permissions === null) return 0o644;
  if (typeof permissions === 'number' && Number.isFinite(permissions)) return Math.trunc(permissions);
  const octal = /^\s*(?:0o)?([0-7]+)\s*$/i.exec(pyStr(permissions));
  if (octal?.[1]) return parseInt(octal[1], 8);
  log(b, `Undecodable write_files permissions ${JSON.stringify(permissions)}: using 0644`);
  return 0o644;
}

async function chown(b: Boot, target: string, owner: string): Promise<void> {
  const [user = '', group] = owner.split(':', 2);
  const isRoot = (n: string | undefined): boolean => n === 'root' || n === '0';
  if (isRoot(user) && (group === undefined || isRoot(group))) {
    // root is uid 0 on every system; an unprivileged agent (unit tests) cannot give files away.
    if (process.getuid?.() === 0) chownSync(target, 0, group === undefined ? -1 : 0);
    return;
  }
  const code = await b.ctx.run(['chown', owner, target]);
  if (code !== 0) throw new Error(`chown ${owner} ${target} exited ${code}`);
}

// ---- users_groups -----------------------------------------------------------------------------

const USERADD_OPTIONS: Record<string, string> = {
  gecos: '--comment', homedir: '--home', primary_group: '--gid', uid: '--uid', groups: '--groups',
  passwd: '--password', shell: '--shell', expiredate: '--expiredate', inactive: '--inactive', selinux_user: '--selinux-user',
};
const USERADD_FLAGS: Record<string, string> = { no_user_group: '--no-user-group', system: '--system', no_log_init: '--no-log-init' };

interface Accounts {
  users: Set<string>;
  groups: Set<string>;
}

/** Groups first, then users, as cloud-init does; users and groups that exist are left as they are. */
async function usersAndGroups(b: Boot, cfg: Record<string, unknown>): Promise<string> {
  const known: Accounts = { users: accountNames(b, '/etc/passwd'), groups: accountNames(b, '/etc/group') };
  const groups = groupEntries(cfg.groups);
  for (const [name, members] of groups) await createGroup(b, known, name, members);
  const users = userEntries(b, cfg.users);
  for (const user of users) await createUser(b, known, user);
  return `${groups.length} groups, ${users.length} users`;
}

async function createGroup(b: Boot, known: Accounts, name: string, members: string[]): Promise<void> {
  if (known.groups.has(name)) log(b, `Skipping group ${name}: it exists`);
  else if ((await b.ctx.run(['groupadd', name])) === 0) known.groups.add(name);
  // cloud-init only logs a failed groupadd.
  else log(b, `Failed creating group ${name}`);
  for (const member of members) {
    if (!known.users.has(member)) {
      log(b, `Skipping member ${member} of group ${name}: no such user`);
      continue;
    }
    const code = await b.ctx.run(['usermod', '-a', '-G', name, member]);
    if (code !== 0) throw new Error(`usermod -a -G ${name} ${member} exited ${code}`);
  }
}

async function createUser(b: Boot, known: Accounts, user: Record<string, unknown>): Promise<void> {
  const name = String(user.name);
  if (known.users.has(name)) {
    log(b, `Skipping useradd ${name}: the user exists`);
  } else {
    const groups = listOf(user.groups);
    const options: Record<string, unknown> = { ...user, ...(groups.length > 0 ? { groups: groups.join(',') } : {}) };
    if (user.uid !== undefined) options.uid = pyStr(user.uid);
    if (cfgBool(user.create_groups, true)) {
      const wanted = [...groups, ...(typeof user.primary_group === 'string' ? [user.primary_group] : [])];
      for (const g of wanted) if (!known.groups.has(g)) await createGroup(b, known, g, []);
    }
    const argv = ['useradd', name];
    for (const key of Object.keys(options).sort()) {
      const value = options[key];
      const option = USERADD_OPTIONS[key];
      const flag = USERADD_FLAGS[key];
      if (option && typeof value === 'string' && value !== '') argv.push(option, value);
      else if (flag && cfgBool(value, false)) argv.push(flag);
    }
    argv.push(cfgBool(user.no_create_home, false) || cfgBool(user.system, false) ? '-M' : '-m');
    const code = await b.ctx.run(argv);
    if (code !== 0) throw new Error(`useradd ${name} exited ${code}`);
    known.users.add(name);
  }
  if (cfgBool(user.lock_passwd, true)) {
    const code = await b.ctx.run(['passwd', '-l', name]);
    if (code !== 0) throw new Error(`passwd -l ${name} exited ${code}`);
  }
  if (user.plain_text_passwd || user.hashed_passwd) log(b, `Skipping the password of ${name}: the emulator sets no passwords`);
  if (user.sudo) writeSudoRules(b, name, user.sudo);
  if (user.ssh_authorized_keys) await writeAuthorizedKeys(b, name, user);
}

function writeSudoRules(b: Boot, name: string, rules: unknown): void {
  if (typeof rules !== 'string' && !Array.isArray(rules)) throw new Error(`sudo rules of ${name} must be a string or a list`);
  const lines = ['', `# User rules for ${name}`, ...(Array.isArray(rules) ? rules : [rules]).map((r) => `${name} ${pyStr(r)}`)];
  const file = under(b.ctx.root, '/etc/sudoers.d/90-cloud-init-users');
  mkdirSync(dirname(file), { recursive: true, mode: 0o750 });
  // The file is read-only (0440); only root may append to it without making it writable first.
  if (existsSync(file)) chmodSync(file, 0o640);
  appendFileSync(file, `${existsSync(file) ? '' : '# Created by the capflow cloud-init stand-in\n'}${lines.join('\n')}\n`);
  chmodSync(file, 0o440);
}

/** Keys already in the file stay; new ones are appended; the .ssh directory is given to the user. */
async function writeAuthorizedKeys(b: Boot, name: string, user: Record<string, unknown>): Promise<void> {
  const raw = user.ssh_authorized_keys;
  const keys = (typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw : isRecord(raw) ? Object.values(raw) : []).map(pyStr);
  const home = typeof user.homedir === 'string' ? user.homedir : name === 'root' ? '/root' : `/home/${name}`;
  const sshDir = under(b.ctx.root, posix.join(home, '.ssh'));
  mkdirSync(sshDir, { recursive: true, mode: 0o700 });
  const file = join(sshDir, 'authorized_keys');
  const existing = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '') : [];
  writeFileSync(file, `${[...existing, ...keys.filter((k) => !existing.includes(k))].join('\n')}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  const code = await b.ctx.run(['chown', '-R', `${name}:`, sshDir]);
  if (code !== 0) throw new Error(`chown -R ${name}: ${sshDir} exited ${code}`);
}

/** `groups` as a list of names or {name: members} maps, a {name: members} map, or "a, b". */
function groupEntries(groups: unknown): [string, string[]][] {
  if (groups === undefined || groups === null) return [];
  if (typeof groups === 'string') return listOf(groups).map((g) => [g, []]);
  if (isRecord(groups)) return Object.entries(groups).map(([g, m]) => [g, listOf(m)]);
  return asArray(groups).flatMap((g): [string, string[]][] => (isRecord(g) ? groupEntries(g) : [[pyStr(g), []]]));
}

/** `users` as a list of names and user maps, a {name: config} map, or "a, b"; `default` is the image's user, which the emulated image lacks. */
function userEntries(b: Boot, users: unknown): Record<string, unknown>[] {
  const entries: Record<string, unknown>[] =
    typeof users === 'string'
      ? listOf(users).map((name) => ({ name }))
      : isRecord(users)
        ? Object.entries(users).map(([name, v]) => ({ ...(isRecord(v) ? v : {}), name }))
        : asArray(users).flatMap((u) => (typeof u === 'string' ? listOf(u).map((name) => ({ name })) : isRecord(u) ? [u] : []));
  return entries.filter((u) => {
    if (u.name !== 'default' && typeof u.name === 'string' && u.name !== '') return true;
    log(b, u.name === 'default' ? 'Skipping the default user: the emulated image has none' : 'Skipping a user without a name');
    return false;
  });
}

function accountNames(b: Boot, file: string): Set<string> {
  const path = under(b.ctx.root, file);
  if (!existsSync(path)) return new Set();
  return new Set(readFileSync(path, 'utf8').split('\n').map((l) => l.split(':')[0] ?? '').filter(Boolean));
}

// ---- final_message ----------------------------------------------------------------------------

/** Logs the message ($name, ${name} or {{ name }} for version, uptime, timestamp, datasource) and writes boot-finished. */
function finalMessage(b: Boot, message: unknown): string {
  const subs: Record<string, string> = {
    version: VERSION,
    uptime: uptime().toFixed(2),
    timestamp: new Date().toUTCString(),
    datasource: DATASOURCE,
  };
  const template = typeof message === 'string' && message.trim() !== '' ? message.trim()
    : 'Cloud-init stand-in $version finished at $timestamp; datasource $datasource; up $uptime seconds';
  const text = template.replace(/\{\{\s*(\w+)\s*\}\}|\$\{(\w+)\}|\$(\w+)/g, (m, a?: string, c?: string, d?: string) => {
    return subs[(a ?? c ?? d ?? '').toLowerCase()] ?? m;
  });
  log(b, text);
  const finished = under(b.ctx.root, `/var/lib/cloud/instances/${b.ctx.meta.instanceId}/boot-finished`);
  mkdirSync(dirname(finished), { recursive: true });
  writeFileSync(finished, `${subs.uptime} - ${subs.timestamp} - v. ${VERSION}\n`);
  return text;
}

// ---- Helpers ----------------------------------------------------------------------------------

/** A machine path under the boot's root; `..` cannot climb out of it. */
function under(root: string, path: string): string {
  return join(root, posix.resolve('/', path));
}

function mkdirp(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}

function pick(cfg: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((k) => cfg[k] !== undefined).map((k) => [k, cfg[k]]));
}

/** How cloud-init reads a boolean option: true, or a word like "yes". */
function cfgBool(value: unknown, fallback: boolean): boolean {
  if (value === undefined || value === null) return fallback;
  if (typeof value === 'boolean') return value;
  return ['true', '1', 'on', 'yes', 'y'].includes(pyStr(value).trim().toLowerCase());
}

/** A YAML scalar as Python's str() prints it, since cloud-init's shell lines come from Python. */
function pyStr(value: unknown): string {
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  if (value === null || value === undefined) return 'None';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint') return value.toString();
  return JSON.stringify(value) ?? '';
}

function shQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

function listOf(value: unknown): string[] {
  const items = typeof value === 'string' ? value.split(',') : Array.isArray(value) ? value.map(pyStr) : [];
  return items.map((s) => s.trim()).filter(Boolean);
}

function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function asRecord(value: unknown): Record<string, unknown> {
  return isRecord(value) ? value : {};
}


function typeName(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'a list' : typeof value;
}

