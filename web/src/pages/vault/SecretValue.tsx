/**
 * A secret value shown once: masked until asked, copyable, held only by this component (never in a
 * store, the URL or storage) and gone when the dialog closes.
 */
import { ActionIcon, CopyButton, Group, PasswordInput, Tooltip } from "@mantine/core";

export function SecretValue({ label, value }: { label: string; value: string }) {
  return (
    <Group align="flex-end" wrap="nowrap" gap="xs">
      <PasswordInput
        label={label}
        value={value}
        readOnly
        style={{ flex: 1 }}
        autoComplete="off"
        spellCheck={false}
        styles={{ input: { fontFamily: "var(--mantine-font-family-monospace)" } }}
      />
      <CopyButton value={value} timeout={2000}>
        {({ copied, copy }) => (
          <Tooltip label={copied ? "Copied" : "Copy"} withArrow>
            <ActionIcon
              size="lg"
              variant={copied ? "filled" : "default"}
              color={copied ? "teal.9" : undefined}
              onClick={copy}
              aria-label={copied ? "Copied" : `Copy ${label.toLowerCase()}`}
            >
              {copied ? "✓" : "⧉"}
            </ActionIcon>
          </Tooltip>
        )}
      </CopyButton>
    </Group>
  );
}
