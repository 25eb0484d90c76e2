import type { VendorRecord } from '../record-adapter.js';
import type { JsonPatchOperation } from './client.js';

// How a flow's field map (paths such as `MailAddress.City` → values) becomes a PowerOffice
// write: a POST body of nested objects, or JSON Patch operations (docs/vendor-apis.md).

/** JSON Patch ops. An address is patched per line when the record has one, else added whole. */
export function toJsonPatch(
  fields: VendorRecord,
  current: VendorRecord | undefined,
): JsonPatchOperation[] {
  const ops: JsonPatchOperation[] = [];
  const address: VendorRecord = {};
  for (const [path, value] of Object.entries(fields)) {
    if (path.startsWith('MailAddress.')) address[path.slice('MailAddress.'.length)] = value;
    else ops.push({ op: 'replace', path: `/${path.replaceAll('.', '/')}`, value });
  }
  if (Object.keys(address).length > 0) {
    const existing = current?.MailAddress;
    if (existing !== null && typeof existing === 'object') {
      for (const [key, value] of Object.entries(address)) {
        ops.push({ op: 'replace', path: `/MailAddress/${key}`, value });
      }
    } else {
      ops.push({ op: 'add', path: '/MailAddress', value: address });
    }
  }
  return ops;
}

/** A POST body: paths become nested objects; an address without ZipCode and City is left out. */
export function toPostBody(fields: VendorRecord): VendorRecord {
  const body: VendorRecord = {};
  for (const [path, value] of Object.entries(fields)) setPath(body, path, value);
  // PowerOffice requires ZipCode and City when an address is sent (docs/vendor-apis.md).
  const mail = body.MailAddress as VendorRecord | undefined;
  if (mail !== undefined && (mail.ZipCode === undefined || mail.City === undefined)) {
    delete body.MailAddress;
  }
  return body;
}

export function setPath(target: VendorRecord, path: string, value: unknown): void {
  const parts = path.split('.');
  let current = target;
  for (const part of parts.slice(0, -1)) {
    const next = current[part];
    if (next === null || typeof next !== 'object') current[part] = {};
    current = current[part] as VendorRecord;
  }
  current[parts[parts.length - 1]!] = value;
}
