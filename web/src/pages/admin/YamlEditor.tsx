/**
 * YAML with line numbers: an editable text area with a gutter that scrolls with it, and a read-only view; both keep
 * the numbers the server's problems (FILE:LINE:COL) refer to. Plus copy and download of a text.
 */
import { Box, Button, Group, Text } from "@mantine/core";
import { useRef, useState, type CSSProperties } from "react";

const MONO: CSSProperties = {
  fontFamily: "var(--mantine-font-family-monospace)",
  fontSize: 13,
  lineHeight: "20px",
  margin: 0,
};

function Gutter(props: { count: number; scrollTop?: number }) {
  return (
    <Box
      aria-hidden
      style={{
        ...MONO,
        padding: "8px 8px 8px 4px",
        textAlign: "right",
        color: "light-dark(var(--mantine-color-gray-7), var(--mantine-color-dark-1))",
        background: "var(--mantine-color-default-hover)",
        userSelect: "none",
        minWidth: 44,
        overflow: "hidden",
      }}
    >
      <div style={{ transform: `translateY(${-(props.scrollTop ?? 0)}px)` }}>
        {Array.from({ length: props.count }, (_, i) => (
          <div key={i}>{i + 1}</div>
        ))}
      </div>
    </Box>
  );
}

const FRAME: CSSProperties = {
  display: "flex",
  border: "1px solid var(--mantine-color-default-border)",
  borderRadius: 4,
  overflow: "hidden",
};

/** An editable YAML text with line numbers. */
export function YamlEditor(props: { label: string; value: string; onChange: (value: string) => void; rows?: number }) {
  const [scrollTop, setScrollTop] = useState(0);
  const lines = props.value.split("\n").length;
  const height = (props.rows ?? 20) * 20 + 16;
  return (
    <div>
      <Text component="label" htmlFor="yaml-editor" fw={500} size="sm">
        {props.label}
      </Text>
      <div style={{ ...FRAME, height }}>
        <Gutter count={lines} scrollTop={scrollTop} />
        <textarea
          id="yaml-editor"
          value={props.value}
          onChange={(e) => props.onChange(e.currentTarget.value)}
          onScroll={(e) => setScrollTop(e.currentTarget.scrollTop)}
          spellCheck={false}
          wrap="off"
          style={{
            ...MONO,
            flex: 1,
            border: 0,
            outlineOffset: -2,
            padding: 8,
            resize: "none",
            whiteSpace: "pre",
            overflow: "auto",
            background: "var(--mantine-color-body)",
            color: "var(--mantine-color-text)",
          }}
        />
      </div>
    </div>
  );
}

/** A read-only YAML text with line numbers (a focusable, labelled region). */
export function YamlView(props: { label: string; value: string; maxHeight?: number }) {
  const ref = useRef<HTMLPreElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  return (
    <div style={{ ...FRAME, maxHeight: props.maxHeight ?? 320 }}>
      <Gutter count={props.value.split("\n").length} scrollTop={scrollTop} />
      <pre
        ref={ref}
        role="region"
        aria-label={props.label}
        tabIndex={0}
        onScroll={(e) => setScrollTop(e.currentTarget.scrollTop)}
        style={{ ...MONO, flex: 1, padding: 8, overflow: "auto", whiteSpace: "pre" }}
      >
        {props.value}
      </pre>
    </div>
  );
}

/** Copy to the clipboard and download as a file, with a word when it is done. */
export function CopyDownload(props: { text: string; filename: string; what: string }) {
  const [done, setDone] = useState<string | null>(null);
  async function copy() {
    try {
      await navigator.clipboard.writeText(props.text);
      setDone(`Copied the ${props.what}.`);
    } catch {
      setDone("The browser did not allow copying; select the text and copy it instead.");
    }
  }
  function download() {
    const url = URL.createObjectURL(new Blob([props.text], { type: "application/yaml" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = props.filename;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
    setDone(`Downloaded ${props.filename}.`);
  }
  return (
    <Group gap="xs">
      <Button size="xs" variant="default" onClick={() => void copy()}>
        Copy {props.what}
      </Button>
      <Button size="xs" variant="default" onClick={download}>
        Download {props.filename}
      </Button>
      <Text size="sm" c="dimmed" aria-live="polite">
        {done}
      </Text>
    </Group>
  );
}
