/**
 * IPv4 CIDR arithmetic for subnet layouts: parsing, containment, overlap,
 * the AWS provider's way of splitting a VPC block into per-zone subnets, and
 * finding a free block of a given size.
 */

export interface Cidr {
  /** Network address as an unsigned 32-bit number. */
  base: number;
  prefix: number;
}

const CIDR_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

/** Parses `a.b.c.d/n`; undefined when malformed or when host bits are set. */
export function parseCidr(text: string): Cidr | undefined {
  const m = CIDR_RE.exec(text.trim());
  if (!m) return undefined;
  const octets = m.slice(1, 5).map(Number);
  const prefix = Number(m[5]);
  if (octets.some((o) => o > 255) || prefix > 32) return undefined;
  const addr = (((octets[0]! << 24) >>> 0) + (octets[1]! << 16) + (octets[2]! << 8) + octets[3]!) >>> 0;
  if ((addr & ~maskOf(prefix)) >>> 0 !== 0) return undefined;
  return { base: addr, prefix };
}

/** Why a CIDR text is not usable, or undefined when it is. */
export function cidrProblem(text: string): string | undefined {
  const m = CIDR_RE.exec(text.trim());
  if (!m) return `"${text}" is not an IPv4 CIDR block (a.b.c.d/n)`;
  if (m.slice(1, 5).some((o) => Number(o) > 255) || Number(m[5]) > 32) return `"${text}" is not a valid IPv4 CIDR block`;
  if (!parseCidr(text)) return `"${text}" has host bits set (the network address of that block is ${formatCidr(normalize(text))})`;
  return undefined;
}

function normalize(text: string): Cidr {
  const m = CIDR_RE.exec(text.trim())!;
  const o = m.slice(1, 5).map(Number);
  const prefix = Number(m[5]);
  const addr = (((o[0]! << 24) >>> 0) + (o[1]! << 16) + (o[2]! << 8) + o[3]!) >>> 0;
  return { base: (addr & maskOf(prefix)) >>> 0, prefix };
}

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function formatCidr(c: Cidr): string {
  const b = c.base;
  return `${b >>> 24}.${(b >>> 16) & 255}.${(b >>> 8) & 255}.${b & 255}/${c.prefix}`;
}

function size(c: Cidr): number {
  return 2 ** (32 - c.prefix);
}

function asCidr(c: Cidr | string): Cidr {
  if (typeof c !== 'string') return c;
  const parsed = parseCidr(c);
  if (!parsed) throw new Error(`invalid CIDR block ${c}`);
  return parsed;
}

/** True when the two blocks share at least one address. */
export function overlaps(a: Cidr | string, b: Cidr | string): boolean {
  const x = asCidr(a);
  const y = asCidr(b);
  return x.base < y.base + size(y) && y.base < x.base + size(x);
}

/** True when `inner` lies entirely inside `outer`. */
export function contains(outer: Cidr | string, inner: Cidr | string): boolean {
  const o = asCidr(outer);
  const i = asCidr(inner);
  return i.prefix >= o.prefix && i.base >= o.base && i.base + size(i) <= o.base + size(o);
}

/**
 * Splits a block into `count` equal subnets the way the AWS provider does:
 * the block is cut into the next power of two at or above `count`, and the
 * first `count` pieces are returned (the rest stays unused).
 */
export function splitCidr(block: Cidr | string, count: number): string[] {
  const parent = asCidr(block);
  if (!Number.isInteger(count) || count < 1) throw new Error(`cannot split into ${count} subnets`);
  const bits = Math.ceil(Math.log2(count));
  const prefix = parent.prefix + bits;
  if (prefix > 32) throw new Error(`${formatCidr(parent)} cannot hold ${count} subnets`);
  const step = 2 ** (32 - prefix);
  return Array.from({ length: count }, (_, i) => formatCidr({ base: (parent.base + i * step) >>> 0, prefix }));
}

export interface ZoneLayout {
  zone: string;
  public: string;
  private: string;
}

/**
 * The default layout of the AWS provider (PreferPrivate): the VPC block is
 * split into zones+1 pieces; the first is split again into one public subnet
 * per zone, the others are the private subnets, one per zone. PreferPublic
 * swaps the roles. E.g. 10.0.0.0/16 over three zones: public 10.0.0.0/20,
 * 10.0.16.0/20, 10.0.32.0/20; private 10.0.64.0/18, 10.0.128.0/18, 10.0.192.0/18.
 */
export function defaultLayout(vpcCidr: string, zones: readonly string[], schema: 'PreferPrivate' | 'PreferPublic' = 'PreferPrivate'): ZoneLayout[] {
  if (zones.length === 0) return [];
  const pieces = splitCidr(vpcCidr, zones.length + 1);
  const residual = splitCidr(pieces[0]!, zones.length);
  const preferred = pieces.slice(1);
  const [priv, pub] = schema === 'PreferPublic' ? [residual, preferred] : [preferred, residual];
  return zones.map((zone, i) => ({ zone, public: pub[i]!, private: priv[i]! }));
}

/** The first block of `prefix` length inside `within` that overlaps none of `taken`. */
export function firstFree(within: Cidr | string, prefix: number, taken: ReadonlyArray<Cidr | string>): string | undefined {
  const parent = asCidr(within);
  if (prefix < parent.prefix || prefix > 32) return undefined;
  const step = 2 ** (32 - prefix);
  const blocks = taken.map(asCidr);
  for (let base = parent.base; base + step <= parent.base + size(parent); base += step) {
    const candidate = { base: base >>> 0, prefix };
    if (!blocks.some((b) => overlaps(b, candidate))) return formatCidr(candidate);
  }
  return undefined;
}

/** Pairs of indexes whose blocks overlap (malformed blocks are skipped). */
export function overlappingPairs(blocks: ReadonlyArray<string | undefined>): Array<[number, number]> {
  const parsed = blocks.map((b) => (b === undefined ? undefined : parseCidr(b)));
  const out: Array<[number, number]> = [];
  for (let i = 0; i < parsed.length; i++) {
    for (let j = i + 1; j < parsed.length; j++) {
      const a = parsed[i];
      const b = parsed[j];
      if (a && b && overlaps(a, b)) out.push([i, j]);
    }
  }
  return out;
}
