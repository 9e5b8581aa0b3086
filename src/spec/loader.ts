/**
 * Loads a cluster folder: read → substitute variables → parse with positions
 * → check each document → resolve across documents → model. Every problem is
 * collected; nothing throws at the first one.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { InputError, isCapflowError } from '../core/errors.js';
import { hasErrors, printable, sortProblems, SpecInvalidError, type SpecProblem } from './problems.js';
import { CAPI_GROUP, CAPI_LINE_ANNOTATION, CAPI_LINES, groupOf, isCapiLineChoice, kindInfo, type CapiLineChoice } from './kinds.js';
import type { ClusterModel } from './model.js';
import { isRecord } from './paths.js';
import { checkModel } from './checks.js';
import { resolveSpec, type RejectedDocument } from './references.js';
import { expandTopology, findTopology } from './topology.js';
import { checkDocument, DocumentReporter, type CheckedDocument } from './validate.js';
import { checkFileSizes, checkTexts, specLimits, type SpecLimits } from './limits.js';
import { defaultLocations, SchemaRegistry, type ValidatorMode } from './validators.js';
import { parseAllDocuments, visit } from 'yaml';
import {
  findVariables,
  FOLDER_VARS_FILE,
  hasVariables,
  isCredentialName,
  isSymlink,
  looksLikeCredential,
  readVarsFile,
  substitute,
  variableLookup,
  type SubstitutedValue,
  type VariableOptions,
  type VariableUse,
  type VarsEntry,
} from './variables.js';
import { displayPath, findDisplayRoot, listSpecFiles, parseSpecFileInto, positionOfOriginal, readSpecFile, type SourceDocument, type SpecFile } from './yaml-source.js';

export interface LoadOptions extends VariableOptions {
  /** Upstream CRD folder; default env CAPFLOW_SCHEMAS_DIR, else `<repo>/../shared/schemas/capi`. */
  schemasDir?: string;
  /** Generated validators folder; default `<repo>/dist/src/spec/generated`. */
  generatedDir?: string;
  /** 'auto' (default): generated validators when fresh, else runtime compile. */
  validators?: ValidatorMode;
  /** Root that problem file paths are shown relative to; default the enclosing git repository, else the cwd. */
  displayRoot?: string;
  /** Receives warnings from loadClusterSpec (which otherwise returns only the model). */
  onWarning?: (problem: SpecProblem) => void;
  /**
   * The schema line(s) a folder without the Cluster annotation capflow.io/capi-line targets;
   * default env CAPFLOW_CAPI_LINE, else 'auto' (see targetLine).
   */
  capiLine?: CapiLineChoice;
  /** Size limits (file, folder, documents), checked before parsing; default from the environment, else 2 MiB, 4 MiB, 5,000 (see limits.ts). */
  limits?: Partial<SpecLimits>;
}

export interface ValidationResult {
  /** Present when there are no errors. */
  model?: ClusterModel;
  /** Errors and warnings, ordered by file, line and column. */
  problems: SpecProblem[];
  /**
   * Paths outside the cluster folder, relative to the display root, that the load read or looked in
   * (a topology's ClusterClass folder), with or without errors: the reconciler loads the cluster
   * again when one changes.
   */
  inputs?: string[];
}

/** Loads and validates; throws SpecInvalidError (code SPEC_INVALID, exit code 2) listing every problem. */
export async function loadClusterSpec(dir: string, options: LoadOptions = {}): Promise<ClusterModel> {
  const { model, problems } = await validateClusterSpec(dir, options);
  if (!model || hasErrors(problems)) throw new SpecInvalidError(problems, dir);
  for (const p of problems) options.onWarning?.(p);
  return model;
}

export async function validateClusterSpec(dir: string, options: LoadOptions = {}): Promise<ValidationResult> {
  const abs = path.resolve(dir);
  const info = await stat(abs).catch(() => undefined);
  if (!info?.isDirectory()) {
    throw new InputError('SPEC_DIR_NOT_FOUND', `Cluster spec folder ${printable(dir)} does not exist or is not a folder`);
  }
  const displayRoot = options.displayRoot ?? findDisplayRoot(abs);
  const folder = { abs, display: displayPath(abs, displayRoot) };
  const problems: SpecProblem[] = [];
  const inputs: string[] = [];
  const done = (model?: ClusterModel): ValidationResult => {
    const sorted = sortProblems(problems);
    const extra = inputs.length > 0 ? { inputs } : {};
    return hasErrors(sorted) || !model ? { problems: sorted, ...extra } : { model, problems: sorted, ...extra };
  };

  const limits = specLimits(options.limits);
  const listed = await listSpecFiles(abs);
  problems.push(...(await checkFileSizes(listed.map((f) => ({ absPath: f, display: displayPath(f, displayRoot) })), folder.display, limits)));
  if (hasErrors(problems)) return done();
  const files = await Promise.all(listed.map((f) => readSpecFile(f, displayRoot)));
  if (files.length === 0) {
    problems.push({ severity: 'error', code: 'cluster-count', file: folder.display, message: 'no YAML files (*.yaml, *.yml) in the cluster folder' });
    return done();
  }

  if (!(await substituteVariables(abs, displayRoot, files, options, problems))) return done();
  problems.push(...checkTexts(files, folder.display, limits));
  if (hasErrors(problems)) return done();

  const sources: SourceDocument[] = [];
  for (const file of files) parseSpecFileInto(file, sources, problems);

  const registry = new SchemaRegistry(
    defaultLocations({
      ...(options.schemasDir !== undefined ? { schemasDir: options.schemasDir } : {}),
      ...(options.generatedDir !== undefined ? { generatedDir: options.generatedDir } : {}),
    }),
    options.validators ?? 'auto',
  );
  const line = targetLine(sources, options, problems);
  const topology = await findTopology(sources, displayRoot, problems);
  if (topology) inputs.push(...topology.inputs);
  await prefetchValidators(sources, registry, line);
  const checked: CheckedDocument[] = [];
  const rejected: RejectedDocument[] = [];
  for (const src of sources) {
    if (topology?.consumed.has(src)) continue;
    const c = await checkDocument(src, registry, problems, line);
    if (c) checked.push(c);
    else if (isRecord(src.value) && typeof src.value.kind === 'string') {
      const meta = isRecord(src.value.metadata) ? src.value.metadata : {};
      rejected.push({
        kind: src.value.kind,
        name: typeof meta.name === 'string' ? meta.name : '',
        namespace: typeof meta.namespace === 'string' ? meta.namespace : 'default',
      });
    }
  }
  // The topology's expansion replaces the Cluster; its documents are judged as written ones are.
  const clusterChecked = topology && checked.find((c) => c.src === topology.cluster);
  if (topology && clusterChecked?.valid) {
    const expansion = await expandTopology(topology, clusterChecked, problems);
    if (expansion) {
      checked[checked.indexOf(clusterChecked)] = expansion.cluster;
      for (const src of expansion.documents) {
        const c = await checkDocument(src, registry, problems, line);
        if (c) checked.push(c);
      }
    }
  }
  // A file that could not be read whole may hold what other documents refer to: references into
  // it are not reported as missing (its own problems say what to fix first).
  const incomplete = problems.some((p) => p.code === 'yaml-syntax');
  const { model } = resolveSpec(checked, problems, folder, rejected, { incomplete });
  if (model) problems.push(...checkModel(model));
  return done(model);
}

/** Loads the validators the documents need in parallel (imports or compiles); failures surface later per document. */
async function prefetchValidators(sources: SourceDocument[], registry: SchemaRegistry, line: CapiLineChoice): Promise<void> {
  const wanted = new Map<string, Promise<unknown>>();
  for (const s of sources) {
    if (!isRecord(s.value) || typeof s.value.kind !== 'string' || typeof s.value.apiVersion !== 'string') continue;
    const info = kindInfo(s.value.kind);
    if (!info) continue;
    const { version } = groupOf(s.value.apiVersion);
    // Only the first line auto tries: a later one is loaded when a document needs it.
    const l = line === 'auto' ? CAPI_LINES[0].line : line;
    const k = `${info.kind}/${version}@${l}`;
    if (wanted.has(k)) continue;
    wanted.set(
      k,
      registry
        .versions(info, l)
        .then((v) => (v.served.includes(version) ? registry.validator(info, version, l) : undefined))
        .catch(() => undefined),
    );
  }
  await Promise.all(wanted.values());
}

/**
 * The schema line the folder targets: the Cluster's annotation capflow.io/capi-line (v1.10, v1.11
 * or auto) when set, so the folder says it wherever it is loaded (validate, every step, the
 * reconciler); else options.capiLine (the reconciler's --capi-line), else env CAPFLOW_CAPI_LINE,
 * else 'auto': every document is judged by each line that serves its version, and accepted when
 * one of them accepts it (see checkDocument). A bad value is a problem at the annotation.
 */
function targetLine(sources: SourceDocument[], options: LoadOptions, problems: SpecProblem[]): CapiLineChoice {
  const cluster = sources.find((s) => isRecord(s.value) && s.value.kind === 'Cluster' && typeof s.value.apiVersion === 'string' && groupOf(s.value.apiVersion).group === CAPI_GROUP);
  const meta = cluster && isRecord(cluster.value) && isRecord(cluster.value.metadata) ? cluster.value.metadata : undefined;
  const annotation = meta && isRecord(meta.annotations) ? meta.annotations[CAPI_LINE_ANNOTATION] : undefined;
  if (cluster && annotation !== undefined) {
    if (isCapiLineChoice(annotation)) return annotation;
    const r = new DocumentReporter(problems, cluster);
    r.kind = 'Cluster';
    if (typeof meta?.name === 'string') r.name = meta.name;
    r.report('invalid-value', ['metadata', 'annotations', CAPI_LINE_ANNOTATION], `${JSON.stringify(annotation)} is not a schema line capflow knows; use ${LINE_CHOICES}`);
  }
  if (options.capiLine !== undefined) return options.capiLine;
  const fromEnv = process.env.CAPFLOW_CAPI_LINE;
  if (fromEnv === undefined || fromEnv === '') return 'auto';
  if (!isCapiLineChoice(fromEnv)) throw new InputError('CONFIG_INVALID', `CAPFLOW_CAPI_LINE must be one of ${LINE_CHOICES}, not ${JSON.stringify(fromEnv)}`);
  return fromEnv;
}

const LINE_CHOICES = [...CAPI_LINES.map((l) => l.line), 'auto'].join(', ');

function useLocation(file: SpecFile, use: { start: number }): string {
  const pos = positionOfOriginal(file, use.start);
  return `${file.display}:${pos.line}:${pos.column}`;
}

type UseList = Map<string, Array<{ file: SpecFile; use: VariableUse }>>;

/** Bad expressions reported one by one per file; the rest are counted in one more problem. */
const MAX_SYNTAX_PROBLEMS = 50;
/** Places a variable problem lists (`used at ...`); the rest are counted. */
const MAX_LOCATIONS = 20;

function addUse(list: UseList, file: SpecFile, use: VariableUse): void {
  const uses = list.get(use.name) ?? [];
  uses.push({ file, use });
  list.set(use.name, uses);
}

/**
 * Substitutes clusterctl variables in place; false when variable problems stop the load. Values
 * come from the options over the folder's own FOLDER_VARS_FILE, so every loader of the folder
 * (validate, render, each step, the reconciler) substitutes the same values.
 */
async function substituteVariables(folder: string, displayRoot: string, files: SpecFile[], options: VariableOptions, problems: SpecProblem[]): Promise<boolean> {
  const folderVars = await readFolderVars(folder, displayRoot, problems);
  if (folderVars === false) return false;
  const withVars = files.filter((f) => hasVariables(f.original));
  if (withVars.length === 0) return true;
  const given = await variableLookup(options, folderVars);
  const problem: ProblemAt = (file, offset, p) => {
    const pos = positionOfOriginal(file, offset);
    problems.push({ severity: 'error', file: file.display, line: pos.line, column: pos.column, ...p });
  };
  const uses = given === undefined ? withVars.flatMap((file) => findVariables(file.original).map((use) => ({ file, use }))) : [];
  if (uses.length > 0) {
    const names = [...new Set(uses.map((u) => u.use.name))];
    const first = uses[0] as { file: SpecFile; use: VariableUse };
    problem(first.file, first.use.start, {
      code: 'variables-not-substituted',
      message: `the spec uses clusterctl variables (${names.map((n) => `\${${n}}`).join(', ')}) but no values were given`,
      hint: `put KEY=value lines in ${FOLDER_VARS_FILE} beside the specs, or pass --vars FILE and/or --env`,
    });
    return false;
  }
  // Credentials are never substituted, whatever their source (see isCredentialName): a name that
  // looks like one is refused unlooked-up, a value that looks like one is refused unsubstituted.
  const secretValued = new Set<string>();
  const lookup = (name: string): string | undefined => {
    if (given === undefined || isCredentialName(name)) return undefined;
    const value = given(name);
    if (value !== undefined && looksLikeCredential(value)) {
      secretValued.add(name);
      return '';
    }
    return value;
  };
  let ok = true;
  const unset: UseList = new Map();
  const secretNamed: UseList = new Map();
  const secretValues: UseList = new Map();
  for (const file of withVars) {
    const result = substitute(file.original, lookup);
    for (const bad of result.errors.slice(0, MAX_SYNTAX_PROBLEMS)) {
      problem(file, bad.start, { code: 'variable-syntax', message: `bad variable expression ${bad.text}: ${bad.message}` });
    }
    if (result.errors.length > MAX_SYNTAX_PROBLEMS) {
      const next = result.errors[MAX_SYNTAX_PROBLEMS] as { start: number };
      problem(file, next.start, { code: 'variable-syntax', message: `${result.errors.length - MAX_SYNTAX_PROBLEMS} more bad variable expressions in this file` });
    }
    if (result.errors.length > 0) ok = false;
    file.text = result.text;
    file.replacements = result.replacements;
    for (const use of result.uses) {
      if (isCredentialName(use.name)) addUse(secretNamed, file, use);
      else if (secretValued.has(use.name)) addUse(secretValues, file, use);
    }
    for (const use of result.unset) if (!isCredentialName(use.name)) addUse(unset, file, use);
    if (!checkValues(file, result.values, problem)) ok = false;
  }
  const report = (list: UseList, code: SpecProblem['code'], message: (name: string) => string, hint: (name: string) => string): void => {
    for (const [name, uses] of list) {
      const first = uses[0] as { file: SpecFile; use: VariableUse };
      const at = uses.slice(0, MAX_LOCATIONS).map((u) => useLocation(u.file, u.use));
      if (uses.length > MAX_LOCATIONS) at.push(`and ${uses.length - MAX_LOCATIONS} more`);
      problem(first.file, first.use.start, { code, message: `${message(name)}; used at ${at.join(', ')}`, hint: hint(name) });
      ok = false;
    }
  };
  const secretHint = 'secrets travel as Kubernetes Secrets named in the spec, never as variables';
  report(secretNamed, 'variable-secret', (n) => `variable ${n} looks like a credential and is never substituted into a spec`, () => secretHint);
  report(secretValues, 'variable-secret', (n) => `the value of ${n} looks like a credential (an access key id, a private key or a token) and is not substituted`, () => secretHint);
  report(unset, 'variable-unset', (n) => `variable ${n} is not set and has no default`, (n) => `set ${n} in ${FOLDER_VARS_FILE} beside the specs, the --vars file or the environment, or write \${${n}:=default}`);
  return ok;
}

/**
 * The folder's own variable values (FOLDER_VARS_FILE), undefined when it has none, false when the
 * file is refused: a symlink (it could lead anywhere), a malformed line, or a line that holds a
 * credential (the file is committed to Git beside the specs). Problems name file:line and never
 * quote a value.
 */
async function readFolderVars(folder: string, displayRoot: string, problems: SpecProblem[]): Promise<Record<string, string> | undefined | false> {
  const file = path.join(folder, FOLDER_VARS_FILE);
  const link = await isSymlink(file).catch(() => undefined);
  if (link === undefined) return undefined;
  const display = displayPath(file, displayRoot);
  const refuse = (message: string, line?: number): void => {
    problems.push({ severity: 'error', code: 'vars-file', file: display, ...(line !== undefined ? { line, column: 1 } : {}), message, hint: `${FOLDER_VARS_FILE} holds KEY=value lines of non-secret values` });
  };
  if (link) {
    refuse(`${FOLDER_VARS_FILE} must be a regular file, not a symlink (it could lead outside the repository)`);
    return false;
  }
  let entries: VarsEntry[];
  try {
    entries = await readVarsFile(file, display);
  } catch (err) {
    if (!isCapflowError(err)) throw err;
    const line = err.details?.line;
    refuse(err.message.replace(/^.*?:\d+: /, ''), typeof line === 'number' ? line : undefined);
    return false;
  }
  let ok = true;
  for (const e of entries) {
    if (isCredentialName(e.key)) refuse(`${e.key} looks like a credential name; ${FOLDER_VARS_FILE} is committed to Git and must not hold secrets`, e.line);
    else if (looksLikeCredential(e.value)) refuse(`the value of ${e.key} looks like a credential (an access key id, a private key or a token); ${FOLDER_VARS_FILE} is committed to Git and must not hold secrets`, e.line);
    else continue;
    ok = false;
  }
  return ok ? Object.fromEntries(entries.map((e) => [e.key, e.value])) : false;
}

/** Values that fit in one line and one YAML scalar whatever surrounds them (no parse needed to trust them). */
const SAFE_VALUE = /^[A-Za-z0-9_./][A-Za-z0-9_./@+=~:-]*(?: [A-Za-z0-9_./@+=~:-]+)*$/;

/**
 * A variable's value must not change the document's structure: clusterctl pastes values into the
 * text, so a line break followed by `key: value` adds keys (or documents), and ` #`, quotes, `,`,
 * `[]` or `{}` can cut a value short or make it a collection, all silently. Such values are refused
 * at the use (file:line:column), never quoted (they may be sensitive).
 */
/** Reports a problem at an offset of a file's original text (an error unless `severity` says otherwise). */
type ProblemAt = (file: SpecFile, offset: number, p: Omit<SpecProblem, 'severity' | 'file' | 'line' | 'column'> & { severity?: SpecProblem['severity'] }) => void;

/**
 * A value with a line break is refused: it can add keys or documents unseen. Other YAML syntax
 * in a value (a comma in `[${AZS}]`, brackets, ` #`) is a warning: clusterctl users rely on lists
 * spliced in that way, and the schemas still judge the result.
 */
function checkValues(file: SpecFile, values: readonly SubstitutedValue[], problem: ProblemAt): boolean {
  let ok = true;
  const suspicious: SubstitutedValue[] = [];
  for (const v of values) {
    if (!v.fromVariable || v.newEnd === v.newStart) continue;
    const text = file.text.slice(v.newStart, v.newEnd);
    if (/[\r\n\u2028\u2029\u0085]/.test(text)) {
      problem(file, v.use.start, {
        code: 'variable-value',
        message: `the value of \${${v.use.name}} holds a line break, which would change the YAML structure here (new keys or documents)`,
        hint: 'keep variable values on one line',
      });
      ok = false;
    } else if (!(SAFE_VALUE.test(text) && !/:( |$)/.test(text)) && !inComment(file.original, v.use.start)) suspicious.push(v);
  }
  if (suspicious.length === 0) return ok;
  const scalars = scalarRanges(file.text);
  for (const v of suspicious) {
    if (scalars.some(([s, e]) => s <= v.newStart && v.newEnd <= e)) continue;
    problem(file, v.use.start, {
      severity: 'warning',
      code: 'variable-value',
      message: `the value of \${${v.use.name}} does not stay one YAML value here: it holds YAML syntax (": ", " #", a quote, a comma or brackets) that changes the document's structure`,
      hint: `quote the use ("\${${v.use.name}}") if it is meant as one value`,
    });
  }
  return ok;
}

/** Whether an offset of the original text lies in a YAML comment (a `#` after a blank, outside quotes, earlier on its line). */
function inComment(text: string, offset: number): boolean {
  let quote: string | undefined;
  for (let i = text.lastIndexOf('\n', offset - 1) + 1; i < offset; i++) {
    const c = text[i];
    if (quote !== undefined) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '#' && (i === 0 || /\s/.test(text[i - 1] as string))) return true;
  }
  return false;
}

/** Source ranges [start, end) of every scalar (keys and values) of the substituted text. */
function scalarRanges(text: string): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  const docs = parseAllDocuments(text, { version: '1.1', prettyErrors: false, uniqueKeys: false });
  for (const doc of Array.isArray(docs) ? docs : []) {
    visit(doc, {
      Scalar(_key, node) {
        if (node.range) ranges.push([node.range[0], node.range[1]]);
      },
    });
  }
  return ranges;
}
