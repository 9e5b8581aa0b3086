/**
 * Loading WorkflowTemplates from a directory: parse, validate the shape
 * against Argo's JSON schema, reject fields the runner does not implement,
 * index by metadata.name and check every template can run.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { LineCounter, parseAllDocuments } from 'yaml';
import { InputError } from '../core/errors.js';
import { assertSupportedFields } from './fields.js';
import { describeSchemaErrors, repoRoot, workflowTemplateValidator } from './schema.js';
import type { LoadedTemplate, TemplateIndex, WorkflowTemplate } from './types.js';
import { assertRunnable } from './validate.js';

export interface LoadOptions {
  /** Root of the schemas (holding argo/schema.json); default $CAPFLOW_SCHEMAS_DIR or <repo>/../shared/schemas. */
  schemasDir?: string;
}

export function defaultTemplatesDir(): string {
  return path.join(repoRoot(), 'workflow-templates');
}

/** Parses and validates one file; a file may hold several WorkflowTemplate documents. */
export function loadTemplateFile(file: string, options: LoadOptions = {}): LoadedTemplate[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new InputError('RUNNER_TEMPLATE_UNREADABLE', `cannot read ${file}`, { cause });
  }
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: true });
  const out: LoadedTemplate[] = [];
  const validate = workflowTemplateValidator(options.schemasDir);
  for (const doc of Array.isArray(docs) ? docs : [docs]) {
    const err = doc.errors[0];
    if (err) {
      const pos = err.linePos?.[0];
      throw new InputError('RUNNER_TEMPLATE_YAML', `${file}${pos ? `:${pos.line}:${pos.col}` : ''}: ${err.message.split('\n')[0]}`);
    }
    const value = doc.toJS() as unknown;
    if (value === null || value === undefined) continue;
    const line = doc.contents?.range ? lineCounter.linePos(doc.contents.range[0]).line : 1;
    const where = `${file}:${line}`;
    const kind = (value as { kind?: unknown }).kind;
    if (kind !== 'WorkflowTemplate') {
      throw new InputError('RUNNER_TEMPLATE_KIND', `${where}: kind ${JSON.stringify(kind)} is not a WorkflowTemplate (only WorkflowTemplates are read from the templates directory)`);
    }
    const name = (value as { metadata?: { name?: unknown } }).metadata?.name;
    const label = typeof name === 'string' ? name : '(unnamed)';
    if (!validate(value)) {
      const lines = describeSchemaErrors(validate.errors);
      throw new InputError('RUNNER_INVALID_TEMPLATE', `WorkflowTemplate "${label}" (${where}) does not match the Argo schema:\n  ${lines.join('\n  ')}`, {
        details: { template: label, file, errors: lines },
      });
    }
    if (typeof name !== 'string' || name === '') {
      throw new InputError('RUNNER_INVALID_TEMPLATE', `${where}: metadata.name is required`);
    }
    assertSupportedFields(value, name, where);
    out.push({ name, file, resource: value as WorkflowTemplate });
  }
  return out;
}

/**
 * Loads every `*.yaml`/`*.yml` WorkflowTemplate in `dir` (not recursive),
 * indexed by metadata.name. Throws an InputError (code RUNNER_*) on the
 * first invalid or unsupported template, before anything runs.
 */
export function loadTemplates(dir: string = defaultTemplatesDir(), options: LoadOptions = {}): TemplateIndex {
  let entries: string[];
  try {
    entries = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort();
  } catch (cause) {
    throw new InputError('RUNNER_TEMPLATES_DIR', `cannot read the templates directory ${dir}`, { cause });
  }
  const index: TemplateIndex = new Map();
  for (const f of entries) {
    for (const lt of loadTemplateFile(path.join(dir, f), options)) {
      const prev = index.get(lt.name);
      if (prev) throw new InputError('RUNNER_DUPLICATE_TEMPLATE', `WorkflowTemplate "${lt.name}" is defined twice: ${prev.file} and ${lt.file}`);
      index.set(lt.name, lt);
    }
  }
  assertRunnable(index);
  return index;
}

/**
 * The ConfigMaps a local run reads (semaphore limits, env configMapKeyRef) from YAML files of
 * `kind: ConfigMap` documents; returns their `data` by metadata.name (a later file wins).
 * Every value must be a string, as in Kubernetes; errors name the file and line.
 */
export function loadConfigMapFiles(files: string[]): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (cause) {
      throw new InputError('RUNNER_CONFIGMAP_UNREADABLE', `cannot read the ConfigMap file ${file}`, { cause });
    }
    const lineCounter = new LineCounter();
    for (const doc of parseAllDocuments(text, { lineCounter, prettyErrors: true })) {
      const err = doc.errors[0];
      if (err) {
        const pos = err.linePos?.[0];
        throw new InputError('RUNNER_CONFIGMAP_YAML', `${file}${pos ? `:${pos.line}:${pos.col}` : ''}: ${err.message.split('\n')[0]}`);
      }
      const value = doc.toJS() as { kind?: unknown; metadata?: { name?: unknown }; data?: unknown } | null;
      if (value === null || value === undefined) continue;
      const where = `${file}:${doc.contents?.range ? lineCounter.linePos(doc.contents.range[0]).line : 1}`;
      if (value.kind !== 'ConfigMap') throw new InputError('RUNNER_CONFIGMAP_INVALID', `${where}: kind ${JSON.stringify(value.kind)} is not a ConfigMap`);
      const name = value.metadata?.name;
      if (typeof name !== 'string' || name === '') throw new InputError('RUNNER_CONFIGMAP_INVALID', `${where}: metadata.name is required`);
      const data = value.data ?? {};
      if (typeof data !== 'object' || Array.isArray(data)) throw new InputError('RUNNER_CONFIGMAP_INVALID', `${where}: ConfigMap "${name}" data must be a map of strings`);
      for (const [k, v] of Object.entries(data as Record<string, unknown>)) {
        if (typeof v !== 'string') {
          throw new InputError('RUNNER_CONFIGMAP_INVALID', `${where}: ConfigMap "${name}" data.${k} must be a string (quote it: "${String(v)}")`);
        }
      }
      out[name] = { ...(data as Record<string, string>) };
    }
  }
  return out;
}
