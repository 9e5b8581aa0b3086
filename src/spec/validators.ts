/**
 * Validators per kind and version. At build time scripts/gen-validators.mjs
 * writes ajv standalone modules to dist/src/spec/generated/ (see codegen.ts);
 * here they are imported lazily, only for the kinds a spec uses, when their
 * fingerprint (sha256 of the CRD text + converter version) matches the CRD
 * file on disk. Otherwise (missing or stale) the kind's CRD is compiled at
 * runtime, which gives the same verdicts, only slower.
 */
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Ajv as AjvClass, Ajv as AjvInstance, ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { InputError, InternalError } from '../core/errors.js';
import { packageRoot, schemasRoot } from '../core/package.js';
import { CAPI_LINES, CORE_SCHEMAS, type CapiLine, type KindInfo } from './kinds.js';
import { ajvOptions, convertCrdSchema, CONVERTER_VERSION, readCrd, type SchemaShape } from './schemas.js';

export type ValidateFn = ((data: unknown) => boolean) & { errors?: ErrorObject[] | null };

export interface KindValidator {
  validate: ValidateFn;
  shape: SchemaShape;
  origin: 'generated' | 'compiled';
}

export interface KindVersions {
  served: string[];
  all: string[];
}

/** 'auto': generated when fresh, else compile; 'generated': fail unless fresh generated code exists; 'compile': always compile. */
export type ValidatorMode = 'auto' | 'generated' | 'compile';

export interface SchemaLocations {
  /** Upstream CRDs of the v1.10 line (default `<repo>/../shared/schemas/capi`, or `$CAPFLOW_SCHEMAS_DIR/capi`). */
  schemasDir: string;
  /** Upstream CRDs per line (see CAPI_LINES): v1.10 is `schemasDir`, v1.11 `capi-v1.11/` beside it. */
  lineDirs: Record<CapiLine, string>;
  /** capflow's own CRDs (`<repo>/src/spec/crds`). */
  capflowCrdsDir: string;
  /** Where generated validators live (`<repo>/dist/src/spec/generated`). */
  generatedDir: string;
}

/** Index written next to the generated modules. */
export interface GeneratedIndex {
  converterVersion: string;
  /** sha256 over every schema source (sorted by kind). */
  fingerprint: string;
  /** By sourceKey: `<Kind>@<line>` for upstream kinds, `<Kind>` for capflow's and core kinds. */
  kinds: Record<string, { sha256: string; served: string[]; all: string[]; modules: Record<string, string> }>;
}

/** Upstream kinds have one schema per line; capflow's own and core kinds one for all lines. */
export function sourceKey(info: KindInfo, line: CapiLine): string {
  return info.source === 'capi' ? `${info.kind}@${line}` : info.kind;
}

function crdPath(info: KindInfo, loc: SchemaLocations, line: CapiLine): string {
  return path.join(info.source === 'capi' ? loc.lineDirs[line] : loc.capflowCrdsDir, info.crdFile ?? '');
}

export const GENERATED_INDEX = 'index.json';

export { packageRoot };

export function defaultLocations(overrides: Partial<SchemaLocations> = {}): SchemaLocations {
  const root = packageRoot();
  const schemasDir = overrides.schemasDir ?? path.join(schemasRoot(), 'capi');
  const lineDirs = Object.fromEntries(
    CAPI_LINES.map((l) => [l.line, overrides.lineDirs?.[l.line] ?? (l.folder === 'capi' ? schemasDir : path.join(path.dirname(schemasDir), l.folder))]),
  ) as Record<CapiLine, string>;
  return {
    schemasDir,
    lineDirs,
    capflowCrdsDir: overrides.capflowCrdsDir ?? path.join(root, 'src', 'spec', 'crds'),
    generatedDir: overrides.generatedDir ?? path.join(root, 'dist', 'src', 'spec', 'generated'),
  };
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The text a kind's schema comes from, and its fingerprint. */
export async function schemaSource(info: KindInfo, loc: SchemaLocations, line: CapiLine = 'v1.10'): Promise<{ text: string; sha256: string; file: string }> {
  let file: string;
  let text: string;
  if (info.source === 'core') {
    file = `<built-in ${info.kind}>`;
    text = JSON.stringify(CORE_SCHEMAS[info.kind]);
  } else {
    file = crdPath(info, loc, line);
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new InputError('SCHEMA_NOT_FOUND', `Cannot read the ${info.kind} CRD at ${file}`, {
        cause: err,
        hint: 'set CAPFLOW_SCHEMAS_DIR to the folder holding capi/ and capi-v1.11/ (shared/schemas)',
      });
    }
  }
  return { text, file, sha256: sha256(`${CONVERTER_VERSION}\n${text}`) };
}

/** Versions and converted schemas of a kind, from its source text. */
export function schemasFromSource(info: KindInfo, text: string, file: string): { versions: KindVersions; schemas: Map<string, { schema: Record<string, unknown>; shape: SchemaShape }> } {
  const schemas = new Map<string, { schema: Record<string, unknown>; shape: SchemaShape }>();
  if (info.source === 'core') {
    schemas.set('v1', convertCrdSchema(JSON.parse(text) as Record<string, unknown>));
    return { versions: { served: ['v1'], all: ['v1'] }, schemas };
  }
  const crd = readCrd(parseYaml(text), file);
  if (crd.kind !== info.kind) throw new InternalError('SCHEMA_MISMATCH', `${file} defines ${crd.kind}, expected ${info.kind}`);
  for (const v of crd.versions) {
    const s = crd.schemas.get(v.name);
    if (v.served && s) schemas.set(v.name, convertCrdSchema(s));
  }
  return {
    versions: { served: crd.versions.filter((v) => v.served).map((v) => v.name), all: crd.versions.map((v) => v.name) },
    schemas,
  };
}

/** A schema source's fingerprint, and its text when it was read for it. */
interface SourceDigest {
  sha256: string;
  file: string;
  text?: string;
}

/** Fingerprints of CRD files by path, valid while the file's identity, size and mtime stay the same. */
const digests = new Map<string, { stamp: string; sha256: string }>();

/**
 * The fingerprint of a kind's schema source without reading and hashing the file again when it has
 * not changed (a stat instead): every spec load asks for it, and CRD files are up to 300 kB each.
 */
async function sourceDigest(info: KindInfo, loc: SchemaLocations, line: CapiLine): Promise<SourceDigest> {
  if (info.source === 'core') return schemaSource(info, loc, line);
  const file = crdPath(info, loc, line);
  const st = await stat(file).catch(() => undefined);
  const stamp = st ? `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}` : undefined;
  const hit = digests.get(file);
  if (stamp && hit?.stamp === stamp) return { sha256: hit.sha256, file };
  const src = await schemaSource(info, loc, line); // read after the stat: a change in between shows in the next stat
  if (stamp) digests.set(file, { stamp, sha256: src.sha256 });
  return src;
}

const indexCache = new Map<string, Promise<GeneratedIndex | undefined>>();

async function loadIndex(dir: string): Promise<GeneratedIndex | undefined> {
  let p = indexCache.get(dir);
  if (!p) {
    p = readFile(path.join(dir, GENERATED_INDEX), 'utf8').then(
      (t) => JSON.parse(t) as GeneratedIndex,
      () => undefined,
    );
    indexCache.set(dir, p);
  }
  return p;
}

let sharedAjv: AjvInstance | undefined;
const compiled = new Map<string, KindValidator>();
const parsedSources = new Map<string, ReturnType<typeof schemasFromSource>>();

/** Resolves the validators a spec needs; one per load, caches shared across loads. */
export class SchemaRegistry {
  private readonly sources = new Map<string, Promise<SourceDigest>>();

  constructor(
    readonly locations: SchemaLocations,
    readonly mode: ValidatorMode = 'auto',
  ) {}

  private source(info: KindInfo, line: CapiLine): Promise<SourceDigest> {
    const k = sourceKey(info, line);
    let p = this.sources.get(k);
    if (!p) {
      p = sourceDigest(info, this.locations, line);
      this.sources.set(k, p);
    }
    return p;
  }

  private async generatedEntry(info: KindInfo, line: CapiLine): Promise<GeneratedIndex['kinds'][string] | undefined> {
    if (this.mode === 'compile') return undefined;
    const [index, src] = await Promise.all([loadIndex(this.locations.generatedDir), this.source(info, line)]);
    const entry = index?.kinds[sourceKey(info, line)];
    if (entry && entry.sha256 === src.sha256) return entry;
    if (this.mode === 'generated') {
      throw new InternalError(
        'GENERATED_VALIDATORS_STALE',
        `No fresh generated validator for ${sourceKey(info, line)} in ${this.locations.generatedDir}`,
        { hint: 'run npm run build' },
      );
    }
    return undefined;
  }

  private async parsed(info: KindInfo, line: CapiLine): Promise<ReturnType<typeof schemasFromSource>> {
    let src = await this.source(info, line);
    let p = parsedSources.get(src.sha256);
    if (!p) {
      if (src.text === undefined) {
        // known by its fingerprint only: read it now, and go on with what was read
        src = await schemaSource(info, this.locations, line);
        this.sources.set(sourceKey(info, line), Promise.resolve(src));
      }
      p = parsedSources.get(src.sha256) ?? schemasFromSource(info, src.text as string, src.file);
      parsedSources.set(src.sha256, p);
    }
    return p;
  }

  /** The versions of a kind in one line (capflow's and core kinds are the same in every line). */
  async versions(info: KindInfo, line: CapiLine = 'v1.10'): Promise<KindVersions> {
    const entry = await this.generatedEntry(info, line);
    if (entry) return { served: entry.served, all: entry.all };
    return (await this.parsed(info, line)).versions;
  }

  async validator(info: KindInfo, version: string, line: CapiLine = 'v1.10'): Promise<KindValidator> {
    const entry = await this.generatedEntry(info, line);
    const file = entry?.modules[version];
    if (entry && file) {
      const mod = (await import(pathToFileURL(path.join(this.locations.generatedDir, file)).href)) as { validate: ValidateFn; shape: SchemaShape };
      return { validate: mod.validate, shape: mod.shape, origin: 'generated' };
    }
    const src = await this.source(info, line);
    const key = `${src.sha256}:${version}`;
    const hit = compiled.get(key);
    if (hit) return hit;
    const converted = (await this.parsed(info, line)).schemas.get(version);
    if (!converted) throw new InternalError('SCHEMA_VERSION_MISSING', `${src.file} has no served schema for ${info.kind} ${version}`);
    if (!sharedAjv) {
      // Loaded only when compiling: executors with fresh generated validators never pay for ajv itself.
      sharedAjv = new (await ajvClass())(ajvOptions(false));
    }
    const validator: KindValidator = { validate: sharedAjv.compile(converted.schema) as ValidateFn, shape: converted.shape, origin: 'compiled' };
    compiled.set(key, validator);
    return validator;
  }
}

/**
 * ajv's class from a dynamic import: Node gives ajv's CommonJS exports as named exports, a bundle
 * (esbuild) may give them only under `default`.
 */
async function ajvClass(): Promise<typeof AjvClass> {
  const mod = (await import('ajv')) as unknown as { Ajv?: typeof AjvClass; default?: { Ajv?: typeof AjvClass } };
  const Ajv = mod.Ajv ?? mod.default?.Ajv;
  if (typeof Ajv !== 'function') throw new InternalError('AJV_NOT_LOADED', 'the ajv module has no Ajv class');
  return Ajv;
}
