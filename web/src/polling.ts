/**
 * Pages that keep a list current: load it now, again every few seconds while the page is open, and at once
 * after the user changed something (`load`). One shape for every polled page.
 */
import { useCallback, useEffect, useState } from "react";
import { api } from "./api.js";

/** Runs `load` now and every `everyMs` (only once when null) while mounted, and again whenever `load` changes. */
export function usePolling(load: () => Promise<void>, everyMs: number | null): void {
  useEffect(() => {
    void load();
    if (everyMs === null) return;
    const timer = setInterval(() => void load(), everyMs);
    return () => clearInterval(timer);
  }, [load, everyMs]);
}

/**
 * GET `path` (an `{ items }` answer) now and every `everyMs`: the items (null until the first answer), the last
 * failure's message (cleared by the next success; `setError` lets the page report its own), and `load`.
 */
export function usePolledList<T>(path: string, everyMs: number | null) {
  const [items, setItems] = useState<T[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = useCallback(async () => {
    try {
      setItems((await api<{ items: T[] }>("GET", path)).items);
      setError(null);
    } catch (e) {
      setError((e as Error).message);
    }
  }, [path]);
  usePolling(load, everyMs);
  return { items, error, setError, load };
}
