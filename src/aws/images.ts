/**
 * The image (AMI) a machine runs: `spec.ami.id` when the template pins one, else looked up the way
 * the AWS provider (CAPA) does: DescribeImages owned by `imageLookupOrg` (default CAPA's publishing
 * account 258751437250) whose name matches `imageLookupFormat` (default
 * `capa-ami-{{.BaseOS}}-?{{.K8sVersion}}-*`) with `{{.BaseOS}}` = `imageLookupBaseOS` (default
 * ubuntu-24.04) and `{{.K8sVersion}}` = the Kubernetes version without its leading "v"; the newest
 * CreationDate wins (ties by image id). Nothing found is an InputError naming the template.
 *
 * Lookups are cached per run (per scope), so a group of many machines or several groups with the
 * same template cost one DescribeImages.
 */
import { DescribeImagesCommand, type Image } from '@aws-sdk/client-ec2';
import { InputError } from '../core/errors.js';
import type { AWSMachineSpec } from '../spec/model.js';
import type { ClusterScope } from './scope.js';

export const DEFAULT_IMAGE_LOOKUP_ORG = '258751437250';
export const DEFAULT_IMAGE_LOOKUP_FORMAT = 'capa-ami-{{.BaseOS}}-?{{.K8sVersion}}-*';
export const DEFAULT_IMAGE_LOOKUP_BASE_OS = 'ubuntu-24.04';

const cache = new WeakMap<ClusterScope, Map<string, Promise<string>>>();

/** Arm (Graviton) instance families: a digit followed by "g" in the family (m6g, c7gn, t4g). */
export function architectureOf(instanceType: string): 'arm64' | 'x86_64' {
  const family = instanceType.split('.')[0] ?? '';
  return /^[a-z]+\d+[a-z]*g[a-z]*$/.test(family) ? 'arm64' : 'x86_64';
}

/** The name pattern CAPA would look up for this spec and version. */
export function imageNamePattern(spec: AWSMachineSpec, kubernetesVersion: string): string {
  const format = typeof spec.imageLookupFormat === 'string' && spec.imageLookupFormat !== '' ? spec.imageLookupFormat : DEFAULT_IMAGE_LOOKUP_FORMAT;
  const baseOS = spec.imageLookupBaseOS || DEFAULT_IMAGE_LOOKUP_BASE_OS;
  const version = kubernetesVersion.replace(/^v/, '');
  return format.replace(/\{\{\s*\.BaseOS\s*\}\}/g, baseOS).replace(/\{\{\s*\.K8sVersion\s*\}\}/g, version);
}

/** The newest image by CreationDate, ties broken by image id (deterministic). */
export function newestImage(images: readonly Image[]): Image | undefined {
  return [...images]
    .filter((i) => i.ImageId)
    .sort((a, b) => (b.CreationDate ?? '').localeCompare(a.CreationDate ?? '') || (a.ImageId ?? '').localeCompare(b.ImageId ?? ''))[0];
}

/** Owner alias of the EKS-optimized images. */
export const EKS_IMAGE_OWNER = 'amazon';

/**
 * The name of the EKS-optimized images Amazon publishes for a lookup type (AWSLaunchTemplate
 * ami.eksLookupType: AmazonLinux, the default, AmazonLinuxGPU, AmazonLinux2023, AmazonLinux2023GPU),
 * an architecture and a Kubernetes minor: the images CAPA's SSM parameters
 * (/aws/service/eks/optimized-ami/<minor>/...) point at, newest first.
 */
export function eksImageNamePattern(lookupType: string | undefined, arch: 'arm64' | 'x86_64', kubernetesVersion: string): string {
  const m = /^v?(\d+)\.(\d+)/.exec(kubernetesVersion);
  const minor = m ? `${m[1]}.${m[2]}` : kubernetesVersion;
  switch (lookupType) {
    case 'AmazonLinux2023GPU':
      return `amazon-eks-node-al2023-x86_64-nvidia-${minor}-v*`;
    case 'AmazonLinuxGPU':
      return `amazon-eks-gpu-node-${minor}-v*`;
    case 'AmazonLinux2023':
      return `amazon-eks-node-al2023-${arch}-standard-${minor}-v*`;
    default:
      return arch === 'arm64' ? `amazon-eks-arm64-node-${minor}-v*` : `amazon-eks-node-${minor}-v*`;
  }
}

/**
 * The AMI id for a machine of `spec` running `kubernetesVersion`. `templateName` (optional) is named
 * in the error when nothing matches. `eks`: the machine is a node of an EKS cluster, which (as in
 * CAPA) takes the EKS-optimized image of ami.eksLookupType unless the spec names its own lookup
 * (imageLookupOrg, imageLookupFormat or imageLookupBaseOS); found by name with DescribeImages rather
 * than through CAPA's SSM parameters.
 */
export async function resolveImageId(scope: ClusterScope, spec: AWSMachineSpec, kubernetesVersion: string, templateName?: string, eks = false): Promise<string> {
  if (spec.ami?.id) return spec.ami.id;
  const arch = architectureOf(spec.instanceType);
  const eksLookup = eks && !spec.imageLookupOrg && !spec.imageLookupBaseOS && !(typeof spec.imageLookupFormat === 'string' && spec.imageLookupFormat !== '');
  const org = eksLookup ? EKS_IMAGE_OWNER : spec.imageLookupOrg || DEFAULT_IMAGE_LOOKUP_ORG;
  const pattern = eksLookup ? eksImageNamePattern(spec.ami?.eksLookupType, arch, kubernetesVersion) : imageNamePattern(spec, kubernetesVersion);
  const key = JSON.stringify([org, pattern, arch]);
  let perScope = cache.get(scope);
  if (!perScope) {
    perScope = new Map();
    cache.set(scope, perScope);
  }
  const cached = perScope.get(key);
  if (cached) return cached;
  const lookup = (async () => {
    const out = await scope.ec2.send(
      new DescribeImagesCommand({
        Owners: [org],
        Filters: [
          { Name: 'name', Values: [pattern] },
          { Name: 'architecture', Values: [arch] },
          { Name: 'state', Values: ['available'] },
        ],
      }),
      { abortSignal: scope.signal },
    );
    const image = newestImage(out.Images ?? []);
    if (!image?.ImageId) {
      const which = templateName ? `${eks ? 'AWSMachinePool' : 'AWSMachineTemplate'}/${templateName}` : 'the AWSMachineTemplate';
      throw new InputError('AMI_NOT_FOUND', `no ${arch} image named "${pattern}" owned by ${org} in ${scope.region} for ${which} (Kubernetes ${kubernetesVersion})`, {
        hint: eksLookup
          ? `set spec.awsLaunchTemplate.ami.id of ${which}, or ami.eksLookupType to an image type published for Kubernetes ${kubernetesVersion} in ${scope.region}`
          : `set spec.template.spec.ami.id of ${which}, or imageLookupOrg/imageLookupFormat/imageLookupBaseOS to images that exist in ${scope.region}`,
        details: { template: templateName, org, pattern, region: scope.region },
      });
    }
    return image.ImageId;
  })();
  perScope.set(key, lookup);
  lookup.catch(() => perScope.delete(key));
  return lookup;
}
