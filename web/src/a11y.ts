/**
 * Accessibility and phone-width behaviour for every page at once, so that each page gets it without asking:
 * - focus goes back to the control that opened a dialog when the dialog goes away, however it was closed
 *   (Escape, the close button, Cancel) and however the page removed it (many pages unmount their dialog, which
 *   Mantine's own focus return does not see); if that control is gone or disabled, to the page's heading;
 * - Escape closes only the top dialog when one is open over another;
 * - each table cell carries its column's header as `data-label`, which a11y.css shows as the label of the
 *   cell when a table becomes a list of cards on a narrow screen (under 600 px).
 */

const DIALOG = '[role="dialog"], [role="alertdialog"]';

/** What had focus: the latest element, and the one before it (a dialog may take focus before it is seen here). */
let current: HTMLElement | null = null;
let previous: HTMLElement | null = null;
const openers = new Map<Element, HTMLElement | null>();

function onFocusIn(event: FocusEvent): void {
  const target = event.target;
  if (!(target instanceof HTMLElement) || target === current) return;
  previous = current;
  current = target;
}

function focusLost(): boolean {
  const active = document.activeElement;
  return !active || active === document.body || !active.isConnected;
}

function headingOfPage(): HTMLElement | null {
  const heading = document.querySelector<HTMLElement>("main h1");
  if (heading && !heading.hasAttribute("tabindex")) heading.setAttribute("tabindex", "-1");
  return heading;
}

function trackDialogs(): void {
  const present = new Set(document.querySelectorAll(DIALOG));
  for (const dialog of present) {
    if (openers.has(dialog)) continue;
    const opener = current && !dialog.contains(current) ? current : previous;
    openers.set(dialog, opener ?? null);
  }
  for (const [dialog, opener] of openers) {
    if (present.has(dialog) && dialog.isConnected) continue;
    openers.delete(dialog);
    if (!focusLost()) continue;
    if (opener?.isConnected) opener.focus();
    // Gone, or disabled by what the dialog did: the page's heading, so that focus is not lost to the document.
    if (focusLost()) headingOfPage()?.focus();
  }
}

/**
 * Escape closes only the dialog on top. Mantine's Modal and Drawer each close on any Escape pressed in the window,
 * so a dialog opened over another (Revoke over a request's detail) closed both. With more than one open, this
 * listener (registered before any dialog's) takes the key and presses the top dialog's close button instead.
 */
function onEscape(event: KeyboardEvent): void {
  if (event.key !== "Escape" || event.isComposing) return;
  const open = [...document.querySelectorAll<HTMLElement>(DIALOG)].filter((d) => d.getClientRects().length > 0);
  if (open.length < 2) return;
  const top = open[open.length - 1]!;
  const close = top.querySelector<HTMLButtonElement>(
    ".mantine-Modal-close, .mantine-Drawer-close, button[aria-label='Close']",
  );
  if (!close) return;
  event.stopImmediatePropagation();
  event.preventDefault();
  close.click();
}

/** Roles a table keeps when a11y.css lays it out as cards (some browsers drop a table's semantics with display). */
const TABLE_ROLES: [string, string][] = [
  ["table", "table"],
  [":scope > thead, :scope > tbody", "rowgroup"],
  [":scope > thead > tr, :scope > tbody > tr", "row"],
  [":scope > thead > tr > th", "columnheader"],
  [":scope > tbody > tr > th", "rowheader"],
  [":scope > tbody > tr > td", "cell"],
];

/**
 * Column headers as labels of the cells under them (a11y.css shows them when rows become cards), and the
 * table's roles spelt out so that a screen reader still reads it as a table when it is laid out as cards.
 */
export function labelTableCells(root: ParentNode = document): void {
  for (const table of root.querySelectorAll("table")) {
    for (const [selector, role] of TABLE_ROLES) {
      const elements = selector === "table" ? [table] : table.querySelectorAll(selector);
      for (const element of elements) if (!element.hasAttribute("role")) element.setAttribute("role", role);
    }
    const headers = [...table.querySelectorAll(":scope > thead > tr:last-child > th")].map(
      (th) => th.textContent?.trim() ?? "",
    );
    if (headers.length === 0) continue;
    for (const row of table.querySelectorAll(":scope > tbody > tr")) {
      let column = 0;
      for (const cell of row.children) {
        const label = headers[column] ?? "";
        if (cell.getAttribute("data-label") !== label) cell.setAttribute("data-label", label);
        column += (cell as HTMLTableCellElement).colSpan || 1;
      }
    }
  }
}

let installed = false;

/** Starts both behaviours for the document; once. */
export function installA11y(): void {
  if (installed || typeof document === "undefined") return;
  installed = true;
  document.addEventListener("focusin", onFocusIn, true);
  window.addEventListener("keydown", onEscape, { capture: true });
  let queued = false;
  const observer = new MutationObserver(() => {
    // Dialogs at once (focus must not wait a frame); table labels once per frame at most.
    trackDialogs();
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      labelTableCells();
    });
  });
  observer.observe(document.body, { childList: true, subtree: true });
}
