/** JSON schemas for step inputs and outputs, checked with ajv. */
import { Ajv, type ErrorObject } from 'ajv';
import { InputError, InternalError } from './errors.js';

export type JsonSchema = Record<string, unknown>;

const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: true, coerceTypes: false });
const cache = new WeakMap<JsonSchema, ReturnType<typeof ajv.compile>>();

function compiled(schema: JsonSchema) {
  let v = cache.get(schema);
  if (!v) {
    v = ajv.compile(schema);
    cache.set(schema, v);
  }
  return v;
}

function describe(errors: ErrorObject[] | null | undefined): string[] {
  return (errors ?? []).map((e) => {
    const where = e.instancePath ? e.instancePath.slice(1).replace(/\//g, '.') : '(root)';
    if (e.keyword === 'additionalProperties') return `${where}: unknown parameter "${String(e.params.additionalProperty)}"`;
    return `${where}: ${e.message ?? 'invalid'}`;
  });
}

/** Validates (and fills defaults into) step parameters; InputError lists every problem. */
export function checkInput(stepId: string, schema: JsonSchema, params: Record<string, unknown>): void {
  const validate = compiled(schema);
  if (!validate(params)) {
    const problems = describe(validate.errors);
    throw new InputError('STEP_PARAMS_INVALID', `${stepId}: invalid parameters:\n  ${problems.join('\n  ')}`, { details: { problems } });
  }
}

/** Outputs are ours: a mismatch is a bug, not the user's fault. */
export function checkOutput(stepId: string, schema: JsonSchema, outputs: Record<string, unknown>): void {
  const validate = compiled(schema);
  if (!validate(outputs)) {
    throw new InternalError('STEP_OUTPUTS_INVALID', `${stepId}: outputs do not match the step's schema: ${describe(validate.errors).join('; ')}`);
  }
}
