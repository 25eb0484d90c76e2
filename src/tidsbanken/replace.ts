import { UpstreamError } from '../errors.js';
import type { UpdateResult, VendorRecord } from '../record-adapter.js';

/**
 * Tidsbanken replaces whole objects (a PUT carries the full record, docs/vendor-apis.md): read
 * the current one first, so a field edited there meanwhile is not overwritten with our copy,
 * and send it with only `fields` changed.
 */
export async function replaceFields(
  label: string,
  id: string,
  fields: VendorRecord,
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
  const record = await replace({ ...current, ...fields });
  return { record, reads: [current] };
}
