#!/usr/bin/env node
// Generates ajv standalone validators for every supported kind (upstream kinds
// once per schema line: capi/ and capi-v1.11/) into
// dist/src/spec/generated/ (run by `npm run build` after tsc). The conversion
// code lives in src/spec (compiled to dist/src/spec) so it is tested.
import { generateValidators } from '../dist/src/spec/codegen.js';
import { defaultLocations } from '../dist/src/spec/validators.js';

const started = Date.now();
const result = await generateValidators(defaultLocations());
console.log(
  `Generated ${result.modules.length} spec validators in ${result.outDir} (fingerprint ${result.fingerprint.slice(0, 12)}, ${Date.now() - started} ms)`,
);
