/**
 * EC2 user data as cloud-init reads it: gzip, MIME multipart (text/cloud-config, text/x-shellscript,
 * text/jinja2), a `## template: jinja` header rendered with the instance's metadata (the variables
 * Cluster API's bootstrap data uses), `#cloud-config` and `#!` scripts. Anything else is an error
 * part, so the boot fails visibly, as cloud-init logs unhandled user data.
 */
import { gunzipSync } from 'node:zlib';
import { parse as parseYaml } from 'yaml';

export interface InstanceMetadata {
  instanceId: string;
  localHostname: string;
  localIpv4: string;
  region: string;
  availabilityZone: string;
}

/** One part of the user data, after decompression, MIME splitting and jinja rendering. */
export type UserDataPart =
  | { kind: 'cloud-config'; name: string; text: string; config: Record<string, unknown> }
  | { kind: 'shell-script'; name: string; text: string }
  | { kind: 'error'; name: string; code: UserDataErrorCode; message: string };

export type UserDataErrorCode =
  | 'USER_DATA_UNHANDLED'
  | 'USER_DATA_UNSUPPORTED'
  | 'USER_DATA_GZIP'
  | 'USER_DATA_MIME'
  | 'USER_DATA_JINJA'
  | 'USER_DATA_YAML';

// ---- Decoding ---------------------------------------------------------------------------------

const CLOUD_CONFIG = 'text/cloud-config';
const SHELL_SCRIPT = 'text/x-shellscript';
const JINJA = 'text/jinja2';
const NOT_MULTIPART = 'text/x-not-multipart';
/** Types whose real type is read from how the content starts. */
const TYPED_BY_CONTENT = new Set([NOT_MULTIPART, 'text/plain']);
const GZIP_TYPES = new Set(['application/x-gzip', 'application/gzip', 'application/gzip-compressed']);
/** Longest first, so `#cloud-config-archive` is not taken for `#cloud-config`. */
const STARTS = [
  ['## template: jinja', JINJA],
  ['#cloud-config-archive', 'text/cloud-config-archive'],
  ['#cloud-config-jsonp', 'text/cloud-config-jsonp'],
  ['#cloud-boothook', 'text/cloud-boothook'],
  ['#include-once', 'text/x-include-once-url'],
  ['#part-handler', 'text/part-handler'],
  ['#cloud-config', CLOUD_CONFIG],
  ['#include', 'text/x-include-url'],
  ['#!', SHELL_SCRIPT],
] as const;
const JINJA_HEADER = /^##\s*template:\s*jinja[ \t]*(\r?\n|$)/i;

interface MimeLeaf {
  type: string;
  body: Buffer;
  filename?: string;
}

export function decodeUserData(raw: Buffer, meta: InstanceMetadata): UserDataPart[] {
  if (raw.length === 0) return [];
  let data = raw;
  if (isGzip(raw)) {
    try {
      data = gunzipSync(raw);
    } catch (err) {
      return [errorPart('part-001', 'USER_DATA_GZIP', `user data starts as gzip but does not decompress: ${messageOf(err)}`)];
    }
    if (data.length === 0) return [];
  }
  let leaves: MimeLeaf[];
  try {
    leaves = looksLikeMime(data) ? parseMime(data.toString('latin1')) : [{ type: NOT_MULTIPART, body: data }];
  } catch (err) {
    return [errorPart('part-001', 'USER_DATA_MIME', `user data is a broken MIME message: ${messageOf(err)}`)];
  }
  // cloud-init names unnamed parts by their position among all parts.
  return leaves.map((leaf, i) => toPart(leaf, safeName(leaf.filename) ?? `part-${String(i + 1).padStart(3, '0')}`, meta));
}

function toPart(leaf: MimeLeaf, name: string, meta: InstanceMetadata): UserDataPart {
  let { type, body } = leaf;
  if (GZIP_TYPES.has(type)) {
    try {
      body = gunzipSync(body);
    } catch (err) {
      return errorPart(name, 'USER_DATA_GZIP', `${name}: ${type} part does not decompress: ${messageOf(err)}`);
    }
    type = NOT_MULTIPART;
  }
  let text = body.toString('utf8');
  if (TYPED_BY_CONTENT.has(type)) type = typeFromStart(text) ?? type;
  if (type === JINJA) {
    const rendered = renderJinja(text, meta);
    if ('error' in rendered) return errorPart(name, 'USER_DATA_JINJA', `${name}: ${rendered.error}`);
    text = rendered.text;
    type = typeFromStart(text) ?? '';
    if (type !== CLOUD_CONFIG && type !== SHELL_SCRIPT) {
      return errorPart(name, 'USER_DATA_JINJA', `${name}: the jinja template renders to neither #cloud-config nor a #! script`);
    }
  }
  if (type === CLOUD_CONFIG) return cloudConfigPart(name, text);
  if (type === SHELL_SCRIPT) return { kind: 'shell-script', name, text };
  if (TYPED_BY_CONTENT.has(type)) {
    return errorPart(
      name,
      'USER_DATA_UNHANDLED',
      `Unhandled non-multipart userdata in ${name}: it starts with ${JSON.stringify(text.slice(0, 40))}, ` +
        'not #cloud-config, #!, ## template: jinja or a MIME header',
    );
  }
  return errorPart(name, 'USER_DATA_UNSUPPORTED', `${name}: ${type} parts are not supported by the emulator`);
}

function cloudConfigPart(name: string, text: string): UserDataPart {
  let doc: unknown;
  try {
    // YAML 1.1 as cloud-init's PyYAML reads it: `permissions: 0644` is octal, `yes` is true.
    doc = parseYaml(text, { version: '1.1', uniqueKeys: false, logLevel: 'error' });
  } catch (err) {
    return errorPart(name, 'USER_DATA_YAML', `${name}: cloud-config is not valid YAML: ${messageOf(err)}`);
  }
  if (doc === null || doc === undefined) return { kind: 'cloud-config', name, text, config: {} };
  if (!isRecord(doc)) return errorPart(name, 'USER_DATA_YAML', `${name}: cloud-config must be a mapping`);
  return { kind: 'cloud-config', name, text, config: doc };
}

function typeFromStart(text: string): string | undefined {
  const lower = text.slice(0, 64).toLowerCase();
  return STARTS.find(([prefix]) => lower.startsWith(prefix))?.[1];
}

/** cloud-init's own test (a MIME-Version header in the first 4 KiB), or a multipart Content-Type first. */
function looksLikeMime(data: Buffer): boolean {
  const head = data.subarray(0, 4096).toString('latin1').toLowerCase();
  return head.includes('mime-version:') || head.startsWith('content-type: multipart/');
}

/** The leaves of a MIME message held as latin1 text (one char per byte, so bodies round-trip). */
function parseMime(message: string): MimeLeaf[] {
  const { headers, body } = splitHeaders(message);
  const [type, params] = headerValue(headers.get('content-type') ?? 'text/plain');
  if (type.startsWith('multipart/')) {
    if (!params.boundary) throw new Error(`${type} without a boundary`);
    return multipartBodies(body, params.boundary).flatMap(parseMime);
  }
  const disposition = headerValue(headers.get('content-disposition') ?? '')[1];
  const filename = disposition.filename ?? params.name;
  const encoding = (headers.get('content-transfer-encoding') ?? '').trim().toLowerCase();
  const bytes =
    encoding === 'base64'
      ? Buffer.from(body, 'base64')
      : encoding === 'quoted-printable'
        ? Buffer.from(body.replace(/=\r?\n/g, '').replace(/=([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1')
        : Buffer.from(body, 'latin1');
  return [{ type, body: bytes, ...(filename ? { filename } : {}) }];
}

function splitHeaders(text: string): { headers: Map<string, string>; body: string } {
  const blank = /\r?\n\r?\n/.exec(text);
  const startsBlank = /^\r?\n/.exec(text);
  const [head, body] = startsBlank
    ? ['', text.slice(startsBlank[0].length)]
    : blank
      ? [text.slice(0, blank.index), text.slice(blank.index + blank[0].length)]
      : [text, ''];
  const headers = new Map<string, string>();
  // Folded header lines continue with whitespace.
  for (const line of head.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return { headers, body };
}

/** `text/plain; charset="utf-8"` as ['text/plain', {charset: 'utf-8'}]. */
function headerValue(value: string): [string, Record<string, string>] {
  const [first = '', ...rest] = value.split(';');
  const params: Record<string, string> = {};
  for (const p of rest) {
    const eq = p.indexOf('=');
    if (eq > 0) params[p.slice(0, eq).trim().toLowerCase()] = p.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
  }
  return [first.trim().toLowerCase(), params];
}

/** The bodies between boundary lines; the line break before a boundary belongs to the boundary. */
function multipartBodies(body: string, boundary: string): string[] {
  const escaped = boundary.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const delimiter = new RegExp(`(?:^|\\r?\\n)--${escaped}(--)?[ \\t]*(?:\\r?\\n|$)`, 'gm');
  const bodies: string[] = [];
  let start: number | undefined;
  for (const m of body.matchAll(delimiter)) {
    if (start !== undefined) bodies.push(body.slice(start, m.index));
    if (m[1]) return bodies;
    start = m.index + m[0].length;
  }
  throw new Error(`no closing boundary --${boundary}--`);
}

/** The instance data keys a template may use, as cloud-init names them for EC2. */
function jinjaVariables(meta: InstanceMetadata): Record<string, string> {
  return {
    'ds.meta_data.instance_id': meta.instanceId,
    'ds.meta_data.local_hostname': meta.localHostname,
    'ds.meta_data.local_ipv4': meta.localIpv4,
    'ds.meta_data.placement.availability_zone': meta.availabilityZone,
    'v1.instance_id': meta.instanceId,
    'v1.local_hostname': meta.localHostname,
    'v1.region': meta.region,
    'v1.availability_zone': meta.availabilityZone,
    'v1.cloud_name': 'aws',
    'v1.platform': 'ec2',
  };
}

function renderJinja(template: string, meta: InstanceMetadata): { text: string } | { error: string } {
  const body = template.replace(JINJA_HEADER, '');
  const statement = /\{[%#][^\n]{0,40}/.exec(body);
  if (statement) return { error: `jinja statements and comments are not supported by the emulator: ${JSON.stringify(statement[0])}` };
  const vars = jinjaVariables(meta);
  const unknown = new Set<string>();
  const text = body.replace(/\{\{\s*(.*?)\s*\}\}/gs, (_m, name: string) => {
    const value = vars[name];
    if (value === undefined) unknown.add(name);
    return value ?? '';
  });
  if (unknown.size > 0) {
    return { error: `unknown jinja variable ${[...unknown].map((n) => JSON.stringify(n)).join(', ')} (known: ${Object.keys(vars).join(', ')})` };
  }
  return { text };
}

const isGzip = (b: Buffer): boolean => b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;

function errorPart(name: string, code: UserDataErrorCode, message: string): UserDataPart {
  return { kind: 'error', name, code, message };
}

/** A part's file name as a script name: no directories, nothing hidden. */
function safeName(filename: string | undefined): string | undefined {
  const name = filename?.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '');
  return name ? name : undefined;
}


export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array) && !(value instanceof Date);
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
