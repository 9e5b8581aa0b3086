/**
 * Loads a cluster folder: read → substitute variables → parse with positions
 * → check each document → resolve across documents → model. Every problem is
 * collected; nothing throws at the first one.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { InputError } from '../core/errors.js';
import { hasErrors, sortProblems, SpecInvalidError, type SpecProblem } from './problems.js';
import { groupOf, kindInfo } from './kinds.js';
import type { ClusterModel } from './model.js';
import { isRecord } from './paths.js';
import { resolveSpec, type RejectedDocument } from './references.js';
import { checkDocument, type CheckedDocument } from './validate.js';
import { defaultLocations, SchemaRegistry, type ValidatorMode } from './validators.js';
import { findUnsupportedExpressions, findVariables, hasVariables, substitute, variableLookup, type VariableOptions, type VariableUse } from './variables.js';
import { displayPath, findDisplayRoot, listSpecFiles, parseSpecFile, positionOf, positionOfOriginal, readSpecFile, type SourceDocument, type SpecFile } from './yaml-source.js';

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
}

export interface ValidationResult {
  /** Present when there are no errors. */
  model?: ClusterModel;
  /** Errors and warnings, ordered by file, line and column. */
  problems: SpecProblem[];
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
    throw new InputError('SPEC_DIR_NOT_FOUND', `Cluster spec folder ${dir} does not exist or is not a folder`);
  }
  const displayRoot = options.displayRoot ?? findDisplayRoot(abs);
  const folder = { abs, display: displayPath(abs, displayRoot) };
  const problems: SpecProblem[] = [];
  const done = (model?: ClusterModel): ValidationResult => {
    const sorted = sortProblems(problems);
    return hasErrors(sorted) || !model ? { problems: sorted } : { model, problems: sorted };
  };

  const files = await Promise.all((await listSpecFiles(abs)).map((f) => readSpecFile(f, displayRoot)));
  if (files.length === 0) {
    problems.push({ severity: 'error', code: 'cluster-count', file: folder.display, message: 'no YAML files (*.yaml, *.yml) in the cluster folder' });
    return done();
  }

  if (!(await substituteVariables(files, options, problems))) return done();

  const sources: SourceDocument[] = [];
  for (const file of files) {
    const parsed = parseSpecFile(file);
    for (const issue of parsed.issues) {
      const pos = positionOf(file, issue.offset);
      problems.push({ severity: 'error', code: 'yaml-syntax', file: file.display, line: pos.line, column: pos.column, message: `YAML: ${issue.message}` });
    }
    sources.push(...parsed.documents);
  }

  const registry = new SchemaRegistry(
    defaultLocations({
      ...(options.schemasDir !== undefined ? { schemasDir: options.schemasDir } : {}),
      ...(options.generatedDir !== undefined ? { generatedDir: options.generatedDir } : {}),
    }),
    options.validators ?? 'auto',
  );
  await prefetchValidators(sources, registry);
  const checked: CheckedDocument[] = [];
  const rejected: RejectedDocument[] = [];
  for (const src of sources) {
    const c = await checkDocument(src, registry, problems);
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
  const { model } = resolveSpec(checked, problems, folder, rejected);
  return done(model);
}

/** Loads the validators the documents need in parallel (imports or compiles); failures surface later per document. */
async function prefetchValidators(sources: SourceDocument[], registry: SchemaRegistry): Promise<void> {
  const wanted = new Map<string, Promise<unknown>>();
  for (const s of sources) {
    if (!isRecord(s.value) || typeof s.value.kind !== 'string' || typeof s.value.apiVersion !== 'string') continue;
    const info = kindInfo(s.value.kind);
    if (!info) continue;
    const { version } = groupOf(s.value.apiVersion);
    const k = `${info.kind}/${version}`;
    if (wanted.has(k)) continue;
    wanted.set(
      k,
      registry
        .versions(info)
        .then((v) => (v.served.includes(version) ? registry.validator(info, version) : undefined))
        .catch(() => undefined),
    );
  }
  await Promise.all(wanted.values());
}

function useLocation(file: SpecFile, use: { start: number }): string {
  const pos = positionOfOriginal(file, use.start);
  return `${file.display}:${pos.line}:${pos.column}`;
}

/** Substitutes clusterctl variables in place; false when variable problems stop the load. */
async function substituteVariables(files: SpecFile[], options: VariableOptions, problems: SpecProblem[]): Promise<boolean> {
  const withVars = files.filter((f) => hasVariables(f.original));
  if (withVars.length === 0) return true;
  const lookup = await variableLookup(options);
  const problem = (file: SpecFile, offset: number, p: Omit<SpecProblem, 'severity' | 'file' | 'line' | 'column'>): void => {
    const pos = positionOfOriginal(file, offset);
    problems.push({ severity: 'error', file: file.display, line: pos.line, column: pos.column, ...p });
  };
  if (lookup === undefined) {
    const uses = withVars.flatMap((file) => findVariables(file.original).map((use) => ({ file, use })));
    const names = [...new Set(uses.map((u) => u.use.name))];
    const first = uses[0] ?? { file: withVars[0] as SpecFile, use: { start: (withVars[0] as SpecFile).original.indexOf('${') } };
    problem(first.file, first.use.start, {
      code: 'variables-not-substituted',
      message: `the spec uses clusterctl variables (${names.length > 0 ? names.map((n) => `\${${n}}`).join(', ') : '${...}'}) but no values were given`,
      hint: 'pass --vars FILE (KEY=value lines) and/or --env to substitute them',
    });
    return false;
  }
  let ok = true;
  const unset = new Map<string, Array<{ file: SpecFile; use: VariableUse }>>();
  for (const file of withVars) {
    for (const bad of findUnsupportedExpressions(file.original)) {
      problem(file, bad.start, {
        code: 'variable-syntax',
        message: `unsupported variable expression ${bad.text}; use \${VAR}, \${VAR:=default} or \${VAR:-default}`,
      });
      ok = false;
    }
    const result = substitute(file.original, lookup);
    file.text = result.text;
    file.replacements = result.replacements;
    for (const use of result.unset) {
      const list = unset.get(use.name) ?? [];
      list.push({ file, use });
      unset.set(use.name, list);
    }
  }
  for (const [name, uses] of unset) {
    const first = uses[0] as { file: SpecFile; use: VariableUse };
    problem(first.file, first.use.start, {
      code: 'variable-unset',
      message: `variable ${name} is not set and has no default; used at ${uses.map((u) => useLocation(u.file, u.use)).join(', ')}`,
      hint: `set ${name} in the --vars file or the environment, or write \${${name}:=default}`,
    });
    ok = false;
  }
  return ok;
}
