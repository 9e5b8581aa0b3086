/**
 * The container runtime stand-in of an emulated machine: a gRPC server on containerd's socket that
 * answers the part of the CRI v1 API (package runtime.v1) kubeadm uses. kubeadm connects to the
 * runtime before its image pull, and that failure cannot be ignored by a preflight check name; with
 * this stand-in every preflight check but SystemVerification runs as on a real node.
 *
 *   RuntimeService.Version       name `capflow-stand-in`, API v1
 *   RuntimeService.Status        RuntimeReady and NetworkReady true (containers are not run here)
 *   RuntimeService.ListPodSandbox, ListContainers   empty (kubeadm reset finds nothing to stop)
 *   ImageService.ImageFsInfo     empty
 *   ImageService.ImageStatus     the images "pulled" so far
 *   ImageService.PullImage       records the image (nothing is downloaded: no traffic leaves the host)
 * Other methods answer UNIMPLEMENTED, as grpc does for an unknown method.
 *
 * The messages are encoded by hand (a few string, bool and nested fields, numbers as in cri-api's
 * api.proto) rather than loading the whole proto: the stand-in needs six small messages.
 */
import { Server, ServerCredentials, type handleUnaryCall, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';

export const CRI_SOCKET = '/run/containerd/containerd.sock';

type Field = [number, string | boolean | Buffer | Field[]];

/** Protocol buffers wire format for strings, bools and nested messages (lengths as varints). */
export function encodeMessage(fields: Field[]): Buffer {
  const parts: Buffer[] = [];
  for (const [number, value] of fields) {
    if (typeof value === 'boolean') {
      parts.push(varint(number << 3), varint(value ? 1 : 0));
      continue;
    }
    const bytes = typeof value === 'string' ? Buffer.from(value) : Buffer.isBuffer(value) ? value : encodeMessage(value);
    parts.push(varint((number << 3) | 2), varint(bytes.length), bytes);
  }
  return Buffer.concat(parts);
}

function varint(n: number): Buffer {
  const out: number[] = [];
  let v = n >>> 0;
  while (v > 127) {
    out.push((v & 127) | 128);
    v >>>= 7;
  }
  out.push(v);
  return Buffer.from(out);
}

/** The length-delimited fields of a message, by number (enough to read an ImageSpec). */
export function decodeFields(buf: Buffer): Map<number, Buffer[]> {
  const fields = new Map<number, Buffer[]>();
  let i = 0;
  const readVarint = (): number => {
    let result = 0;
    let shift = 0;
    for (;;) {
      const byte = buf[i++];
      if (byte === undefined) throw new Error('truncated protobuf message');
      result += (byte & 127) * 2 ** shift;
      if (byte < 128) return result;
      shift += 7;
    }
  };
  while (i < buf.length) {
    const key = readVarint();
    const wire = key & 7;
    const number = Math.floor(key / 8);
    if (wire === 0) readVarint();
    else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else if (wire === 2) {
      const length = readVarint();
      fields.set(number, [...(fields.get(number) ?? []), buf.subarray(i, i + length)]);
      i += length;
    } else throw new Error(`unsupported protobuf wire type ${wire}`);
  }
  return fields;
}

/** ImageSpec.image (field 1) of a request whose field 1 is an ImageSpec. */
function imageOf(request: Buffer): string {
  const spec = decodeFields(request).get(1)?.[0];
  return spec ? (decodeFields(spec).get(1)?.[0]?.toString() ?? '') : '';
}

function method(service: string, name: string): ServiceDefinition[string] {
  return {
    path: `/runtime.v1.${service}/${name}`,
    requestStream: false,
    responseStream: false,
    requestSerialize: (b: Buffer) => b,
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => b,
  };
}

export interface CriStandIn {
  pulled(): string[];
  stop(): Promise<void>;
}

export async function startCriStandIn(opts: { socket?: string; version: string; log(line: string): void }): Promise<CriStandIn> {
  const socket = opts.socket ?? CRI_SOCKET;
  const images = new Set<string>();
  const unary =
    (answer: (request: Buffer) => Buffer): handleUnaryCall<Buffer, Buffer> =>
    (call, callback) => {
      try {
        callback(null, answer(call.request));
      } catch (err) {
        callback(err as Error, null);
      }
    };
  const condition = (type: string): Field => [1, [[1, type], [2, true]]];
  const runtime: UntypedServiceImplementation = {
    Version: unary(() => encodeMessage([[1, '0.1.0'], [2, 'capflow-stand-in'], [3, opts.version], [4, 'v1']])),
    Status: unary(() => encodeMessage([[1, [condition('RuntimeReady'), condition('NetworkReady')]]])),
    ListPodSandbox: unary(() => Buffer.alloc(0)),
    ListContainers: unary(() => Buffer.alloc(0)),
  };
  const image: UntypedServiceImplementation = {
    ImageFsInfo: unary(() => Buffer.alloc(0)),
    ImageStatus: unary((req) => {
      const name = imageOf(req);
      return images.has(name) ? encodeMessage([[1, [[1, `sha256:stand-in-${name}`], [2, name]]]]) : Buffer.alloc(0);
    }),
    PullImage: unary((req) => {
      const name = imageOf(req);
      images.add(name);
      opts.log(`container runtime stand-in: pulled ${name} (recorded; nothing downloaded)`);
      return encodeMessage([[1, `sha256:stand-in-${name}`]]);
    }),
  };
  const server = new Server();
  server.addService(Object.fromEntries(Object.keys(runtime).map((n) => [n, method('RuntimeService', n)])), runtime);
  server.addService(Object.fromEntries(Object.keys(image).map((n) => [n, method('ImageService', n)])), image);
  mkdirSync(dirname(socket), { recursive: true });
  rmSync(socket, { force: true });
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  return {
    pulled: () => [...images],
    stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}
