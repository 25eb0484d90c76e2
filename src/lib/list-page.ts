import type { z } from 'zod';

// One page of a vendor list, item by item: a record that fails its schema is set aside with
// its reason instead of failing the page, so one bad record never stops a whole feed.

export interface RejectedListItem {
  /** The item exactly as the API sent it. */
  raw: unknown;
  /** Its id when one can be read from it (`Id`), for the operator and for a retry. */
  recordId: string | undefined;
  reason: string;
}

export interface ListPage<T> {
  records: T[];
  rejected: RejectedListItem[];
}

export function parseListItems<T>(items: readonly unknown[], schema: z.ZodType<T>): ListPage<T> {
  const page: ListPage<T> = { records: [], rejected: [] };
  for (const item of items) {
    const parsed = schema.safeParse(item);
    if (parsed.success) {
      page.records.push(parsed.data);
      continue;
    }
    const issue = parsed.error.issues[0];
    const where = issue !== undefined && issue.path.length > 0 ? issue.path.join('.') : 'record';
    page.rejected.push({
      raw: item,
      recordId: idOf(item),
      reason: `${where}: ${issue?.message ?? 'does not match the expected schema'}`,
    });
  }
  return page;
}

function idOf(item: unknown): string | undefined {
  if (item === null || typeof item !== 'object') return undefined;
  const id = (item as Record<string, unknown>).Id;
  if (typeof id === 'string' && id !== '') return id;
  if (typeof id === 'number' && Number.isFinite(id)) return String(id);
  return undefined;
}
