/**
 * The reason a user gives for an action (a request, a decision, a revoke, a kill, a checkout, an eligibility): a
 * text area that grows with the text and whose onChange gives the text. `autoFocus` marks it for the dialog's
 * focus trap.
 */
import { Textarea } from "@mantine/core";

export function ReasonField({
  label = "Reason",
  description,
  value,
  onChange,
  error,
  autoFocus = false,
}: {
  label?: string;
  description?: string | undefined;
  value: string;
  onChange: (text: string) => void;
  error?: string | null | undefined;
  autoFocus?: boolean;
}) {
  return (
    <Textarea
      label={label}
      description={description}
      value={value}
      onChange={(e) => onChange(e.currentTarget.value)}
      error={error}
      autosize
      minRows={2}
      // Mantine's Modal focuses the first element carrying data-autofocus; absent, it focuses the first field.
      data-autofocus={autoFocus || undefined}
    />
  );
}
