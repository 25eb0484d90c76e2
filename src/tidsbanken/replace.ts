import { UpstreamError } from '../errors.js';
import { UnseenChangeError, type UpdateResult, type VendorRecord } from '../record-adapter.js';

/**
 * Tidsbanken replaces whole objects (a PUT carries the full record, docs/vendor-apis.md): read
 * the current one right before the PUT — on every attempt — and send it with only `fields`
 * changed, so a field edited there meanwhile is not overwritten with an older copy. When the
 * read shows a change the mirror (`known`) has not seen yet, nothing is sent: the engine must
 * first decide by policy whether that change or ours wins (UnseenChangeError carries the read).
 * What is left is the milliseconds between this read and the PUT.
 */
export async function replaceFields(
  label: string,
  id: string,
  fields: VendorRecord,
  known: VendorRecord | undefined,
  read: () => Promise<VendorRecord | undefined>,
  replace: (record: VendorRecord) => Promise<VendorRecord | undefined>,
): Promise<UpdateResult> {
  const current = await read();
  if (current === undefined) {
    throw new UpstreamError(
      'tidsbanken',
      404,
      false,
      `${label.toLowerCase()} ${id} no longer exists in Tidsbanken`,
    );
  }
  if (isNewer(current.SistEndretDato, known?.SistEndretDato)) {
    throw new UnseenChangeError(current);
  }
  const record = await replace({ ...current, ...fields });
  return { record, reads: [current] };
}

/** Whether `read` is a later change time than `known` (unknown or unparsable: not newer). */
function isNewer(read: unknown, known: unknown): boolean {
  if (typeof read !== 'string' || typeof known !== 'string') return false;
  const readMs = Date.parse(read);
  const knownMs = Date.parse(known);
  return Number.isFinite(readMs) && Number.isFinite(knownMs) && readMs > knownMs;
}
