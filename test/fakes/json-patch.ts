import { isDeepStrictEqual } from 'node:util';

// RFC 6902 JSON Patch as ASP.NET Core's JsonPatch applies it to a typed *PatchDto, which is
// what PowerOffice Go v2 PATCH endpoints take (docs/vendor-apis.md,
// PowerOffice). Differences from a plain JSON document, on purpose:
// - path segments match property names case-insensitively (the spec's example uses
//   `/phoneNumber`, clients send `/PhoneNumber`);
// - a typed object has a fixed set of properties: a segment naming none of them fails with
//   "The target location specified by path segment '…' was not found." (the spec's wording),
//   and `remove` on a property sets it to null instead of deleting it;
// - `/-` in remove/replace means the last array element, as in the spec's example.

export class JsonPatchError extends Error {}

type Container = Record<string, unknown> | unknown[];

interface Operation {
  op: string;
  path: string;
  from?: string;
  value?: unknown;
  hasValue: boolean;
}

function parsePointer(pointer: string): string[] {
  if (pointer === '' || !pointer.startsWith('/')) {
    throw new JsonPatchError(`The path '${pointer}' is not a valid JSON Pointer to a property.`);
  }
  return pointer
    .slice(1)
    .split('/')
    .map((segment) => segment.replaceAll('~1', '/').replaceAll('~0', '~'));
}

function isContainer(value: unknown): value is Container {
  return typeof value === 'object' && value !== null;
}

class Patcher {
  constructor(
    private readonly doc: Record<string, unknown>,
    private readonly typeName: string,
  ) {}

  private notFound(segment: string): JsonPatchError {
    return new JsonPatchError(
      `${this.typeName}: The target location specified by path segment '${segment}' was not found.`,
    );
  }

  /** The container holding the last segment, and that segment resolved to a real key. */
  private locate(pointer: string): { parent: Container; key: string } {
    const segments = parsePointer(pointer);
    let current: unknown = this.doc;
    for (const segment of segments.slice(0, -1)) {
      if (!isContainer(current)) throw this.notFound(segment);
      current = Array.isArray(current)
        ? current[this.index(current, segment, false)]
        : current[this.property(current, segment)];
    }
    const last = segments[segments.length - 1]!;
    if (!isContainer(current)) throw this.notFound(last);
    return {
      parent: current,
      key: Array.isArray(current) ? last : this.property(current, last),
    };
  }

  private property(object: Record<string, unknown>, segment: string): string {
    const lower = segment.toLowerCase();
    const key = Object.keys(object).find((name) => name.toLowerCase() === lower);
    if (key === undefined) throw this.notFound(segment);
    return key;
  }

  /** An existing element index; with `append`, also `length` (for add). `-` = last / end. */
  private index(array: unknown[], segment: string, append: boolean): number {
    if (segment === '-') {
      if (append) return array.length;
      if (array.length === 0) throw this.notFound(segment);
      return array.length - 1;
    }
    if (!/^(0|[1-9]\d*)$/.test(segment)) throw this.notFound(segment);
    const index = Number(segment);
    if (index > array.length || (!append && index === array.length)) throw this.notFound(segment);
    return index;
  }

  private get(pointer: string): unknown {
    const { parent, key } = this.locate(pointer);
    return Array.isArray(parent) ? parent[this.index(parent, key, false)] : parent[key];
  }

  private add(pointer: string, value: unknown): void {
    const { parent, key } = this.locate(pointer);
    if (Array.isArray(parent)) parent.splice(this.index(parent, key, true), 0, value);
    else parent[key] = value;
  }

  private remove(pointer: string): unknown {
    const { parent, key } = this.locate(pointer);
    if (Array.isArray(parent)) return parent.splice(this.index(parent, key, false), 1)[0];
    const old = parent[key];
    parent[key] = null;
    return old;
  }

  private replace(pointer: string, value: unknown): void {
    const { parent, key } = this.locate(pointer);
    if (Array.isArray(parent)) parent[this.index(parent, key, false)] = value;
    else parent[key] = value;
  }

  apply(op: Operation): void {
    const needsValue = ['add', 'replace', 'test'].includes(op.op);
    if (needsValue && !op.hasValue) {
      throw new JsonPatchError(
        `The 'value' property of the '${op.op}' operation at '${op.path}' is required.`,
      );
    }
    switch (op.op) {
      case 'add':
        return this.add(op.path, structuredClone(op.value));
      case 'remove':
        this.remove(op.path);
        return;
      case 'replace':
        return this.replace(op.path, structuredClone(op.value));
      case 'move':
      case 'copy': {
        if (op.from === undefined) {
          throw new JsonPatchError(`The 'from' property of the '${op.op}' operation is required.`);
        }
        const value = op.op === 'move' ? this.remove(op.from) : structuredClone(this.get(op.from));
        return this.add(op.path, value);
      }
      case 'test': {
        const current = this.get(op.path);
        if (!isDeepStrictEqual(current, op.value)) {
          throw new JsonPatchError(
            `The current value '${JSON.stringify(current)}' at path '${op.path}' is not equal to the test value '${JSON.stringify(op.value)}'.`,
          );
        }
        return;
      }
      default:
        throw new JsonPatchError(`Invalid JsonPatch operation '${op.op}'.`);
    }
  }
}

function parseOperations(body: unknown): Operation[] {
  if (!Array.isArray(body)) {
    throw new JsonPatchError('The JSON Patch document must be an array of operations.');
  }
  return body.map((raw, i) => {
    if (typeof raw !== 'object' || raw === null) {
      throw new JsonPatchError(`Operation ${i} is not an object.`);
    }
    const { op, path, from } = raw as Record<string, unknown>;
    if (typeof op !== 'string' || typeof path !== 'string') {
      throw new JsonPatchError(`Operation ${i} needs string 'op' and 'path' properties.`);
    }
    if (from !== undefined && typeof from !== 'string') {
      throw new JsonPatchError(`Operation ${i} has a non-string 'from'.`);
    }
    return {
      op: op.toLowerCase(),
      path,
      from,
      value: (raw as { value?: unknown }).value,
      hasValue: 'value' in raw,
    };
  });
}

/**
 * Applies a JSON Patch document to a copy of `doc`; all or nothing. Throws JsonPatchError
 * with ASP.NET-like messages prefixed by `typeName` (e.g. "CustomerPatchDto").
 */
export function applyJsonPatch(
  doc: Record<string, unknown>,
  body: unknown,
  typeName: string,
): Record<string, unknown> {
  const copy = structuredClone(doc);
  const patcher = new Patcher(copy, typeName);
  for (const op of parseOperations(body)) patcher.apply(op);
  return copy;
}
