/**
 * Where the installed capflow package and the upstream schemas are. One
 * answer for every part, from src/ under tsx and from dist/ alike.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InternalError } from './errors.js';

let packageRootCache: string | undefined;

/** The capflow package root (the folder whose package.json is named capflow). */
export function packageRoot(): string {
  if (packageRootCache !== undefined) return packageRootCache;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'capflow') break;
      } catch {
        // not ours; keep walking
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new InternalError('PACKAGE_ROOT_NOT_FOUND', 'Cannot find the capflow package root');
    dir = parent;
  }
  packageRootCache = dir;
  return dir;
}

/**
 * The upstream schemas (capi/ CRDs, argo/ JSON schema): $CAPFLOW_SCHEMAS_DIR,
 * else shared/schemas beside the repository.
 */
export function schemasRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env.CAPFLOW_SCHEMAS_DIR ?? path.resolve(packageRoot(), '..', 'shared', 'schemas');
}
