/** The rows a page's checkboxes select for a bulk decision (Approvals, Reviews). */
import { useCallback, useState } from "react";

export interface Selection {
  has(id: string): boolean;
  /** Select or unselect one row. */
  toggle(id: string, on: boolean): void;
  /** Select exactly these rows (none: clear). */
  set(ids: readonly string[]): void;
  /** After a reload: forget the selected rows that are no longer listed. */
  keepListed(listed: readonly { id: string }[]): void;
}

export function useSelection(): Selection {
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
  const toggle = useCallback(
    (id: string, on: boolean) =>
      setSelected((old) => {
        const next = new Set(old);
        if (on) next.add(id);
        else next.delete(id);
        return next;
      }),
    [],
  );
  const set = useCallback((ids: readonly string[]) => setSelected(new Set(ids)), []);
  const keepListed = useCallback(
    (listed: readonly { id: string }[]) =>
      setSelected((old) => new Set([...old].filter((id) => listed.some((row) => row.id === id)))),
    [],
  );
  return { has: (id) => selected.has(id), toggle, set, keepListed };
}
