import { z } from 'zod';

// Cursor paging (README "The admin API", the list shape): `{ items, nextCursor }`. A cursor is the
// position after the last item of a page (keyset, never an offset), so rows inserted
// meanwhile neither repeat nor push others off a page. Opaque to clients: base64url JSON.

const Position = z.object({ k: z.string().min(1).max(256) }).strict();

/** The `cursor` query parameter: decoded to the position, or undefined on the first page. */
export const keyCursorSchema = z
  .string()
  .max(512)
  .optional()
  .transform((value, ctx) => {
    if (value === undefined) return undefined;
    try {
      const decoded = Position.safeParse(JSON.parse(Buffer.from(value, 'base64url').toString()));
      if (decoded.success) return decoded.data.k;
    } catch {
      // Not base64url JSON: reported below like any other bad cursor.
    }
    ctx.addIssue({ code: 'custom', message: 'is not a cursor this API returned' });
    return z.NEVER;
  });

/** A cursor into a list ordered by a numeric id. */
export const cursorSchema = keyCursorSchema.refine(
  (k) => k === undefined || /^[0-9]{1,18}$/.test(k),
  {
    error: 'is not a cursor this API returned',
  },
);

export function encodeCursor(key: string): string {
  return Buffer.from(JSON.stringify({ k: key })).toString('base64url');
}

/**
 * A page from rows fetched with `limit + 1`: the extra row only says there is more; the
 * cursor points after the last row shown.
 */
export function pageOf<Row, Item>(
  rows: Row[],
  limit: number,
  keyOf: (row: Row) => string,
  toItem: (row: Row) => Item,
): { items: Item[]; nextCursor: string | null } {
  const shown = rows.slice(0, limit);
  const last = shown[shown.length - 1];
  return {
    items: shown.map(toItem),
    nextCursor: rows.length > limit && last !== undefined ? encodeCursor(keyOf(last)) : null,
  };
}
