/**
 * The IAM OIDC provider of an EKS cluster's issuer, which IAM roles for service
 * accounts (IRSA) trust. Found by its URL (one provider per URL and account);
 * made with the audience sts.amazonaws.com and no thumbprint: IAM verifies
 * EKS's issuers against its own trusted CAs, so capflow never has to reach
 * the issuer. One made by another tool (eksctl) is used, never deleted.
 */
import {
  CreateOpenIDConnectProviderCommand,
  DeleteOpenIDConnectProviderCommand,
  GetOpenIDConnectProviderCommand,
  ListOpenIDConnectProvidersCommand,
} from '@aws-sdk/client-iam';
import { awsErrorName } from './find.js';
import { eksOwnedTags, type EksScope } from './eks-scope.js';
import { ownershipOf } from './tags.js';

export const IRSA_AUDIENCE = 'sts.amazonaws.com';

export interface OidcProviderResult {
  arn: string;
  managed: boolean;
}

const hostPath = (issuer: string) => issuer.replace(/^https:\/\//, '').replace(/\/$/, '');

async function findProvider(scope: EksScope, issuer: string): Promise<string | undefined> {
  const list = await scope.iam.send(new ListOpenIDConnectProvidersCommand({}));
  return (list.OpenIDConnectProviderList ?? []).map((p) => p.Arn!).find((arn) => arn?.endsWith(`:oidc-provider/${hostPath(issuer)}`));
}

async function ownedBy(scope: EksScope, arn: string): Promise<boolean | undefined> {
  try {
    const out = await scope.iam.send(new GetOpenIDConnectProviderCommand({ OpenIDConnectProviderArn: arn }));
    return ownershipOf(Object.fromEntries((out.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? ''])), scope.clusterName) === 'owned';
  } catch (err) {
    if (awsErrorName(err) === 'NoSuchEntityException' || awsErrorName(err) === 'NoSuchEntity') return undefined;
    throw err;
  }
}

export async function reconcileOidcProvider(scope: EksScope, issuer: string): Promise<OidcProviderResult> {
  const name = hostPath(issuer);
  const arn = await findProvider(scope, issuer);
  if (arn) {
    const owned = (await ownedBy(scope, arn)) === true;
    scope.plan.record({ resource: 'oidc-provider', name, id: arn, action: owned ? 'no-change' : 'skip', ...(owned ? {} : { detail: 'made by another tool: used, not managed' }) });
    return { arn, managed: owned };
  }
  scope.plan.record({ resource: 'oidc-provider', name, action: 'create', detail: `audience ${IRSA_AUDIENCE}` });
  if (scope.dryRun) return { arn: `(new OIDC provider for ${name})`, managed: true };
  try {
    const out = await scope.iam.send(
      new CreateOpenIDConnectProviderCommand({
        Url: issuer,
        ClientIDList: [IRSA_AUDIENCE],
        Tags: Object.entries(eksOwnedTags(scope, 'oidc-provider', name)).map(([Key, Value]) => ({ Key, Value })),
      }),
    );
    scope.log.info('Created IAM OIDC provider', { issuer });
    return { arn: out.OpenIDConnectProviderArn!, managed: true };
  } catch (err) {
    // A crashed run made it already (one provider per URL).
    if (awsErrorName(err) !== 'EntityAlreadyExistsException' && awsErrorName(err) !== 'EntityAlreadyExists') throw err;
    return { arn: (await findProvider(scope, issuer))!, managed: true };
  }
}

/** Deletes the provider when capflow made it for this cluster. */
export async function deleteOidcProvider(scope: EksScope, arn: string): Promise<void> {
  const owned = await ownedBy(scope, arn);
  if (owned === undefined) return;
  if (!owned) {
    scope.plan.record({ resource: 'oidc-provider', name: arn.split(':oidc-provider/')[1] ?? arn, id: arn, action: 'skip', detail: 'not owned: never deleted' });
    return;
  }
  scope.plan.record({ resource: 'oidc-provider', name: arn.split(':oidc-provider/')[1] ?? arn, id: arn, action: 'delete' });
  if (scope.dryRun) return;
  try {
    await scope.iam.send(new DeleteOpenIDConnectProviderCommand({ OpenIDConnectProviderArn: arn }));
    scope.log.info('Deleted IAM OIDC provider', { arn });
  } catch (err) {
    if (awsErrorName(err) !== 'NoSuchEntityException' && awsErrorName(err) !== 'NoSuchEntity') throw err;
  }
}
