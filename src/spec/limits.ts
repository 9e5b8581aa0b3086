/**
 * Size limits of a cluster folder, checked before anything is parsed, so a
 * huge or hostile folder is refused in milliseconds with a problem that names
 * it (code `too-large`) instead of costing minutes and gigabytes.
 *
 * Defaults, from what real clusters hold: the API server refuses an object
 * over about 1.5 MiB (etcd's limit), and the largest objects in cluster
 * folders are ClusterResourceSet ConfigMaps carrying an add-on manifest (a
 * calico one is about 0.5 MB); a cluster is some 10–50 documents. Parsed YAML
 * with positions takes up to ~60 bytes of memory per byte of key-dense input,
 * so 4 MiB per folder keeps the worst case near 250 MB. Each limit can be
 * raised: LoadOptions.limits, or the environment (CAPFLOW_SPEC_MAX_FILE_BYTES,
 * CAPFLOW_SPEC_MAX_FOLDER_BYTES, CAPFLOW_SPEC_MAX_DOCUMENTS; sizes in bytes,
 * or with a KiB/MiB suffix).
 */
import { MAX_NESTING } from './yaml-checks.js';
import { stat } from 'node:fs/promises';
import { InputError } from '../core/errors.js';
import type { SpecProblem } from './problems.js';

export interface SpecLimits {
  /** Bytes one YAML file may hold. Default 2 MiB. */
  maxFileBytes: number;
  /** Bytes all YAML files of a folder may hold together (after variable substitution too). Default 4 MiB. */
  maxFolderBytes: number;
  /** YAML documents a folder may hold. Default 5,000. */
  maxDocuments: number;
}

export const DEFAULT_SPEC_LIMITS: Readonly<SpecLimits> = Object.freeze({
  maxFileBytes: 2 * 1024 * 1024,
  maxFolderBytes: 4 * 1024 * 1024,
  maxDocuments: 5000,
});

const ENV: Record<keyof SpecLimits, string> = {
  maxFileBytes: 'CAPFLOW_SPEC_MAX_FILE_BYTES',
  maxFolderBytes: 'CAPFLOW_SPEC_MAX_FOLDER_BYTES',
  maxDocuments: 'CAPFLOW_SPEC_MAX_DOCUMENTS',
};

/** The limits in force: those given, else the environment's, else the defaults. A bad environment value is an InputError. */
export function specLimits(given: Partial<SpecLimits> = {}, env: NodeJS.ProcessEnv = process.env): SpecLimits {
  const limits = { ...DEFAULT_SPEC_LIMITS };
  for (const key of Object.keys(ENV) as Array<keyof SpecLimits>) {
    const value = given[key];
    if (value !== undefined) {
      if (!Number.isFinite(value) || value < 1) throw new InputError('CONFIG_INVALID', `spec limit ${key} must be a positive number, not ${String(value)}`);
      limits[key] = value;
      continue;
    }
    const text = env[ENV[key]]?.trim();
    if (text === undefined || text === '') continue;
    const parsed = parseAmount(text, key !== 'maxDocuments');
    if (parsed === undefined) {
      throw new InputError('CONFIG_INVALID', `${ENV[key]} must be a whole number ≥ 1${key === 'maxDocuments' ? '' : ' of bytes (or with a KiB or MiB suffix)'}, not ${JSON.stringify(text)}`);
    }
    limits[key] = parsed;
  }
  return limits;
}

function parseAmount(text: string, bytes: boolean): number | undefined {
  const m = (bytes ? /^(\d+)\s*(KiB|MiB|GiB)?$/i : /^(\d+)$/).exec(text);
  if (!m) return undefined;
  const unit = { kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 }[(m[2] ?? '').toLowerCase()] ?? 1;
  const n = Number(m[1]) * unit;
  return Number.isSafeInteger(n) && n >= 1 ? n : undefined;
}

/** `4 MiB`, `700 KiB`, `512 bytes`. */
export function formatBytes(n: number): string {
  if (n >= 1024 * 1024) return `${trim(n / (1024 * 1024))} MiB`;
  if (n >= 1024) return `${trim(n / 1024)} KiB`;
  return `${n} bytes`;
}

function trim(x: number): string {
  return (Math.round(x * 10) / 10).toString();
}

export interface ListedFile {
  absPath: string;
  display: string;
}

/** Problems for files and a folder over the size limits, from stat alone (nothing is read). */
export async function checkFileSizes(files: ListedFile[], folderDisplay: string, limits: SpecLimits): Promise<SpecProblem[]> {
  const sizes = await Promise.all(files.map(async (f) => ({ ...f, size: (await stat(f.absPath)).size })));
  const problems: SpecProblem[] = [];
  for (const f of sizes) {
    if (f.size > limits.maxFileBytes) {
      problems.push({
        severity: 'error',
        code: 'too-large',
        file: f.display,
        message: `the file is ${formatBytes(f.size)}, over the limit of ${formatBytes(limits.maxFileBytes)} per file; it was not read`,
        hint: `split it, or raise the limit with ${ENV.maxFileBytes} if the size is meant`,
      });
    }
  }
  const total = sizes.reduce((sum, f) => sum + f.size, 0);
  if (problems.length === 0 && total > limits.maxFolderBytes) {
    const largest = [...sizes].sort((a, b) => b.size - a.size).slice(0, 3);
    problems.push({
      severity: 'error',
      code: 'too-large',
      file: folderDisplay,
      message: `the folder's YAML files hold ${formatBytes(total)}, over the limit of ${formatBytes(limits.maxFolderBytes)} per cluster folder (largest: ${largest.map((f) => `${f.display} ${formatBytes(f.size)}`).join(', ')}); nothing was read`,
      hint: `move what is not the cluster's out of the folder, or raise the limit with ${ENV.maxFolderBytes} if the size is meant`,
    });
  }
  return problems;
}

/** The text the loader parses, per file (after variable substitution). */
export interface SizedText {
  display: string;
  text: string;
}

/**
 * Problems for a folder whose text grew past the folder limit (variable values) or that holds
 * more documents than allowed, counted from the `---` markers without parsing (a document
 * marker at the start of a line always starts a document in YAML).
 */
export function checkTexts(files: SizedText[], folderDisplay: string, limits: SpecLimits): SpecProblem[] {
  const total = files.reduce((sum, f) => sum + Buffer.byteLength(f.text, 'utf8'), 0);
  if (total > limits.maxFolderBytes) {
    return [
      {
        severity: 'error',
        code: 'too-large',
        file: folderDisplay,
        message: `with its variables substituted, the folder's YAML holds ${formatBytes(total)}, over the limit of ${formatBytes(limits.maxFolderBytes)} per cluster folder; nothing was parsed`,
        hint: `look for a variable with a large value used many times, or raise the limit with ${ENV.maxFolderBytes} if the size is meant`,
      },
    ];
  }
  const deep = files.map((f) => ({ f, at: tooDeepAt(f.text) })).filter((x) => x.at !== undefined);
  if (deep.length > 0) {
    return deep.map(({ f, at }) => ({
      severity: 'error' as const,
      code: 'yaml-syntax' as const,
      file: f.display,
      line: at!.line,
      column: at!.column,
      message: `YAML: nesting deeper than ${MAX_NESTING} levels of maps and lists; no Kubernetes object needs that many (found before parsing)`,
    }));
  }
  const counts = files.map((f) => ({ display: f.display, documents: countDocuments(f.text) }));
  const documents = counts.reduce((sum, c) => sum + c.documents, 0);
  if (documents <= limits.maxDocuments) return [];
  const largest = [...counts].sort((a, b) => b.documents - a.documents).slice(0, 3);
  return [
    {
      severity: 'error',
      code: 'too-large',
      file: folderDisplay,
      message: `the folder holds ${documents} YAML documents, over the limit of ${limits.maxDocuments} per cluster folder (most: ${largest.map((c) => `${c.display} ${c.documents}`).join(', ')}); nothing was parsed`,
      hint: `a cluster needs tens of documents, not thousands; raise the limit with ${ENV.maxDocuments} if the number is meant`,
    },
  ];
}

/**
 * An upper bound of the documents in a YAML text: its `---` and `...` markers (content after a
 * document end marker is a new bare document), plus one when content comes before the first.
 */
export function countDocuments(text: string): number {
  const marker = /^(?:---|\.\.\.)(?=[ \t\r\n]|$)/gm;
  let count = 0;
  let first = -1;
  for (let m = marker.exec(text); m !== null; m = marker.exec(text)) {
    if (first < 0) first = m.index;
    count++;
  }
  const head = first < 0 ? text : text.slice(0, first);
  // content (not a blank line, comment or directive) before the first marker is a bare document
  if (/^[ \t]*[^\s#%]/m.test(head)) count++;
  return count;
}

/**
 * Where a text first nests flow collections (`[`, `{`) or compact entries (`- - -`, `? ? ?` on one
 * line) past MAX_NESTING, found in one pass without parsing: the parser spends a gigabyte on a
 * million `[` before its own walk could refuse them. Quoted strings and comments are skipped;
 * block nesting by indentation needs quadratic bytes and stays the parser's to judge.
 */
export function tooDeepAt(text: string): { line: number; column: number } | undefined {
  let depth = 0;
  let line = 1;
  let lineStart = 0;
  let quote: '"' | "'" | undefined;
  let compact = 0;
  let atLineHead = true;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\n') {
      line++;
      lineStart = i + 1;
      compact = 0;
      atLineHead = true;
      continue;
    }
    if (quote) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = undefined;
      continue;
    }
    if (atLineHead) {
      if (c === ' ' || c === '\t') continue;
      if ((c === '-' || c === '?') && (text[i + 1] === ' ' || text[i + 1] === '\t')) {
        if (++compact > MAX_NESTING) return { line, column: i - lineStart + 1 };
        i++;
        continue;
      }
      atLineHead = false;
    }
    if (c === '#' && (i === 0 || /\s/.test(text[i - 1]!))) {
      const end = text.indexOf('\n', i);
      i = (end < 0 ? text.length : end) - 1;
    } else if ((c === '"' || c === "'") && /[\s:,[{]/.test(text[i - 1] ?? ' ')) {
      // a quote starts a quoted scalar only where a scalar may start (not mid-word: it's)
      quote = c;
    } else if (c === '[' || c === '{') {
      if (++depth > MAX_NESTING) return { line, column: i - lineStart + 1 };
    } else if (c === ']' || c === '}') {
      depth = Math.max(0, depth - 1);
    }
  }
  return undefined;
}
