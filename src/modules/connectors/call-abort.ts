/**
 * A connector call's abort as a promise to race its steps against: rejects with `error()` when `signal` aborts
 * (after `onAbort`, which destroys the call's connection), also when it aborted already; `stop` removes the
 * listener once the call is over.
 */
export function abortion(signal: AbortSignal | undefined, onAbort: () => void, error: () => Error) {
  let stop = () => {};
  const aborted = new Promise<never>((_, reject) => {
    if (!signal) return;
    const listener = () => {
      onAbort();
      reject(error());
    };
    // An abort between the caller's check and here (while a pool handed out a connection) counts too.
    if (signal.aborted) return listener();
    signal.addEventListener("abort", listener, { once: true });
    stop = () => signal.removeEventListener("abort", listener);
  });
  aborted.catch(() => undefined);
  return { aborted, stop };
}
