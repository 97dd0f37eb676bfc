/** A page's error (announced as an alert) and the confirmation of what the last action did (dismissable). */
import { Alert } from "@mantine/core";

export function PageMessages({
  error,
  notice,
  onDismissNotice,
}: {
  error: string | null;
  notice: string | null;
  onDismissNotice: () => void;
}) {
  return (
    <>
      {error && (
        <Alert color="red" role="alert">
          {error}
        </Alert>
      )}
      {notice && (
        <Alert color="teal.9" role="status" withCloseButton closeButtonLabel="Dismiss" onClose={onDismissNotice}>
          {notice}
        </Alert>
      )}
    </>
  );
}
