/**
 * Field locations after loading: later steps (e.g. provision-vpc, which
 * checks a subnet layout against the region) report their problems at the
 * file:line:column of the field, as the loader does. Each SpecDocument keeps
 * its parsed YAML document in a WeakMap, so the model and its hash are
 * unaffected.
 */
import type { ClusterModel, SpecDocument } from './model.js';
import { formatPath } from './paths.js';
import { SpecInvalidError, type ProblemCode, type SpecProblem } from './problems.js';
import type { PathSegment, SourceDocument } from './yaml-source.js';

const sources = new WeakMap<SpecDocument, SourceDocument>();

/** Called by the loader for every document it puts in a model. */
export function rememberSource(doc: SpecDocument, src: SourceDocument): void {
  sources.set(doc, src);
}

export interface FieldLocation {
  /** Display path of the file, as in problems. */
  file: string;
  /** The file on disk, when the loader read it. */
  absPath?: string;
  /** 1-based. */
  line: number;
  column: number;
}

/**
 * Where `path` (e.g. `['spec', 'network', 'subnets', 1, 'cidrBlock']`) of the
 * document `kind/name` is written. A path that does not exist in the file
 * (a default) resolves to its deepest existing parent. Undefined when the
 * model was not made by the loader or holds no such document.
 */
export function fieldLocation(model: ClusterModel, doc: { kind: string; name: string }, path: readonly PathSegment[]): FieldLocation | undefined {
  const document = model.documents.find((d) => d.kind === doc.kind && d.name === doc.name);
  if (!document) return undefined;
  const src = sources.get(document);
  if (!src) return { file: document.source.file, line: document.source.line, column: document.source.column };
  const pos = src.locate(path);
  return { file: pos.file.display, absPath: pos.file.absPath, line: pos.line, column: pos.column };
}

/** Problems found in a loaded model (by validation's model checks or a step), each at its field. */
export class FieldProblems {
  readonly list: SpecProblem[] = [];
  constructor(private readonly model: ClusterModel) {}

  add(doc: { kind: string; name: string }, path: readonly PathSegment[], code: ProblemCode, message: string, hint?: string, severity: SpecProblem['severity'] = 'error'): void {
    const loc = fieldLocation(this.model, doc, path);
    this.list.push({
      severity,
      code,
      message,
      ...(loc ? { file: loc.file, line: loc.line, column: loc.column } : {}),
      kind: doc.kind,
      name: doc.name,
      path: formatPath([...path]),
      ...(hint ? { hint } : {}),
    });
  }

  /** Throws SpecInvalidError (exit 2) when any error was added. */
  throwIfAny(): void {
    if (this.list.some((p) => p.severity === 'error')) throw new SpecInvalidError(this.list, this.model.dir);
  }
}
