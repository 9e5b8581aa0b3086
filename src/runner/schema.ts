/**
 * Shape validation of WorkflowTemplates against Argo's published JSON schema
 * (`<schemas>/argo/schema.json`, definition io.argoproj.workflow.v1alpha1.WorkflowTemplate).
 *
 * Compiling the definition takes about half a second (it pulls in most of
 * the schema through $refs), so the validator is compiled once per process.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import Ajv2020Module from 'ajv/dist/2020.js';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { InputError } from '../core/errors.js';
import { packageRoot, schemasRoot } from '../core/package.js';

const Ajv2020 = Ajv2020Module.default;
const DEFINITION = 'io.argoproj.workflow.v1alpha1.WorkflowTemplate';

/** `$CAPFLOW_SCHEMAS_DIR`, else `<repo>/../shared/schemas`. */
export function schemasDir(env: NodeJS.ProcessEnv = process.env): string {
  return schemasRoot(env);
}

/** The repository (package) root. */
export const repoRoot = packageRoot;

const cache = new Map<string, ValidateFunction>();

/** The compiled validator for the schema file under `dir` (cached per process). */
export function workflowTemplateValidator(dir: string = schemasDir()): ValidateFunction {
  const file = path.join(dir, 'argo', 'schema.json');
  const cached = cache.get(file);
  if (cached) return cached;
  let raw: string;
  try {
    raw = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new InputError('RUNNER_SCHEMA_MISSING', `Argo JSON schema not found at ${file}`, {
      cause,
      hint: 'set CAPFLOW_SCHEMAS_DIR to the folder that holds argo/schema.json',
    });
  }
  const schema = JSON.parse(raw) as { definitions: Record<string, unknown>; oneOf?: unknown; $id?: string };
  if (!schema.definitions[DEFINITION]) {
    throw new InputError('RUNNER_SCHEMA_MISSING', `${file} has no definition ${DEFINITION}`);
  }
  // The generated schema writes Kubernetes IntOrString as {type: string}, but
  // the API server (and Argo) accept integers there too (`limit: 3`,
  // `activeDeadlineSeconds: 300`). Widen it so valid templates pass.
  schema.definitions['io.k8s.apimachinery.pkg.util.intstr.IntOrString'] = { anyOf: [{ type: 'string' }, { type: 'integer' }] };
  // The top-level oneOf over every kind is not needed to validate one definition.
  delete schema.oneOf;
  const id = 'capflow-argo-schema';
  schema.$id = id;
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
  ajv.addSchema(schema);
  const validate = ajv.getSchema(`${id}#/definitions/${DEFINITION}`);
  if (!validate) throw new InputError('RUNNER_SCHEMA_MISSING', `cannot compile ${DEFINITION} from ${file}`);
  cache.set(file, validate);
  return validate;
}

/** Human lines for ajv errors, at most `max`. */
export function describeSchemaErrors(errors: ErrorObject[] | null | undefined, max = 10): string[] {
  const lines = (errors ?? []).map((e) => {
    const where = e.instancePath ? e.instancePath.slice(1).replace(/\//g, '.') : '(root)';
    const extra = e.keyword === 'enum' ? `: ${JSON.stringify(e.params.allowedValues)}` : '';
    return `${where} ${e.message ?? e.keyword}${extra}`;
  });
  const unique = [...new Set(lines)];
  return unique.length > max ? [...unique.slice(0, max), `… and ${unique.length - max} more`] : unique;
}
