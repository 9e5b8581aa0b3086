/**
 * The local runner: executes `workflow-templates/` DAGs on this machine with
 * Argo's semantics. Rules, supported fields and their sources: ./README.md.
 */
export { loadTemplates, loadTemplateFile, loadConfigMapFiles, defaultTemplatesDir, type LoadOptions } from './load.js';
export { runWorkflow, defaultEntryPoints, generateWorkflowName, processInputs, TRANSIENT_EXIT_CODE } from './engine.js';
export { createTtyRenderer, createPlainRenderer, formatSummaryTable, formatDuration, type Renderer, type TtyRendererOptions } from './render.js';
export { findUnsupportedFields, listIgnoredFields, WORKFLOW_TEMPLATE_RULES } from './fields.js';
export { parseDepends, evaluateDepends, evaluateWhen, evaluateRetryExpression } from './expr.js';
export { workflowTemplateValidator, schemasDir } from './schema.js';
export type * from './types.js';
